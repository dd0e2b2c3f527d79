// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// createKills is how many creates each backend's sweep kills: half at
// random moments, half at evenly spaced ones across a whole create.
const createKills = 50

// A create SIGKILLed at any moment leaves either nothing, or a record
// (incomplete where the rules may be half-way) that the next create in the
// namespace, or prune once its owner is gone, resolves: never rules that no
// record names. Each kill is in a fresh namespace. Half the rounds resolve
// through the next create (then both poststops), half through prune.
func TestCreateKilled(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			span := e.fullCreate()
			t.Logf("a whole create takes up to %s here; kills are swept across 0-%s", span, span)
			var k tally
			leftTmp := 0
			for i := range createKills {
				d := killAt(i, createKills, 0, span)
				ns := testnet.NewNetns(t)
				c := startIn(t, ns)
				if !e.killedAfter("create", c.state(), d) {
					// It ended first: a whole create, nothing to look at.
					e.run("poststop", c.stopped())
					continue
				}
				k.count(t, e, ns, "create", d)
				e.resolve(t, ns, c, i%2 == 0)
				leftTmp += e.tmpFiles()
			}
			t.Logf("%s: %d creates killed mid-way: %s; all resolved, %d temporary files left", b, k.killed, k, leftTmp)
			if leftTmp != 0 {
				t.Errorf("%d temporary files left in the state directory after resolution", leftTmp)
			}
			k.swept(t, "create", createKills, createKills/4)
		})
	}
}

// resolve takes what a killed create left to a clean end, as a node does:
// the next container of the namespace (then the poststops of both), or
// prune once the killed container's process is gone. Afterwards the
// namespace has no fence and the state directory nothing.
func (e *env) resolve(t *testing.T, ns *testnet.Netns, killed *container, byCreate bool) {
	t.Helper()
	if byCreate {
		next := startIn(t, ns)
		if code, stderr := e.run("create", next.state()); code != 0 {
			t.Fatalf("the next create after a killed one: exit %d: %s", code, stderr)
		}
		if l := e.look(ns); !l.fence || !l.record || l.incomplete {
			t.Errorf("after the next create: %+v, want a fence and a complete record", l)
		}
		e.run("poststop", killed.stopped())
		next.kill()
		if code, stderr := e.run("poststop", next.stopped()); code != 0 {
			t.Fatalf("poststop: exit %d: %s", code, stderr)
		}
	} else {
		killed.kill() // the runtime gave up on it
		if out, err := e.cli("prune", "--grace", "0"); err != nil {
			t.Fatalf("prune: %v\n%s", err, out)
		}
	}
	if l := e.look(ns); l.fence || l.record {
		t.Errorf("after resolution: %+v, want nothing", l)
	}
	if f := e.stateFiles(); len(f) > 0 {
		t.Errorf("after resolution the state directory holds %v", f)
	}
}

// poststopKills is how many poststops each backend's sweep kills.
const poststopKills = 30

// A poststop SIGKILLed at any moment never leaves rules that no record
// names (it takes the rules out before the record), and running it again,
// as a runtime that retries does, or prune, clears what it left.
func TestPoststopKilled(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			span := e.fullPoststop()
			var k tally
			locks := 0
			for i := range poststopKills {
				d := killAt(i, poststopKills, 0, span)
				ns, c := e.fenced(t)
				c.kill()
				if !e.killedAfter("poststop", c.stopped(), d) {
					continue
				}
				k.count(t, e, ns, "poststop", d)
				if i%2 == 0 {
					if code, stderr := e.run("poststop", c.stopped()); code != 0 {
						t.Fatalf("poststop again: exit %d: %s", code, stderr)
					}
				} else if out, err := e.cli("prune", "--grace", "0"); err != nil {
					t.Fatalf("prune: %v\n%s", err, out)
				}
				if l := e.look(ns); l.fence || l.record || l.tmp > 0 {
					t.Errorf("after resolution: %+v, want nothing", l)
				}
				// A poststop killed between the record's removal and its
				// lock file's leaves the lock file, which no poststop can
				// name again: prune's sweep removes it.
				var other []string
				for _, f := range e.stateFiles() {
					if strings.HasSuffix(f, ".lock") && !strings.Contains(f, "/") {
						locks++
					} else {
						other = append(other, f)
					}
				}
				if len(other) > 0 {
					t.Errorf("after resolution the state directory holds %v", other)
				}
				if _, err := e.cli("prune", "--grace", "0"); err == nil {
					if f := e.stateFiles(); len(f) > 0 {
						t.Errorf("after prune the state directory holds %v", f)
					}
				}
			}
			t.Logf("%s: %d poststops killed mid-way: %s; all resolved (%d lock files left until a prune)", b, k.killed, k, locks)
			k.swept(t, "poststop", poststopKills, poststopKills/4)
		})
	}
}

// pruneKills is how many prunes each backend's sweep kills.
const pruneKills = 20

// `prune` (what the monitor runs at each resync) SIGKILLed while it takes
// out a fence whose container is gone: it never leaves rules without a
// record (the rules go first), and the next prune clears what it left.
func TestPruneKilled(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			span := e.fullPrune()
			var k tally
			for i := range pruneKills {
				d := killAt(i, pruneKills, 0, span)
				ns, c := e.fenced(t)
				c.kill() // a runtime that never ran poststop
				if !e.killedAfterCLI(d, "prune", "--grace", "0") {
					e.cli("prune", "--grace", "0")
					continue
				}
				k.count(t, e, ns, "prune", d)
				if out, err := e.cli("prune", "--grace", "0"); err != nil {
					t.Fatalf("prune again: %v\n%s", err, out)
				}
				if l := e.look(ns); l.fence || l.record || l.tmp > 0 {
					t.Errorf("after the next prune: %+v, want nothing", l)
				}
				if f := e.stateFiles(); len(f) > 0 {
					t.Errorf("after the next prune the state directory holds %v", f)
				}
			}
			t.Logf("%s: %d prunes killed mid-way: %s; all cleared by the next prune", b, k.killed, k)
			k.swept(t, "prune", pruneKills, pruneKills/5)
		})
	}
}
