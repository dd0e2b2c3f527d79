// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// applyKills is how many applies each backend's sweep kills.
const applyKills = 20

// The proxies of the config a fence is created with (newEnvIn's) and of the
// one apply brings it to: the rules in the kernel name one or the other,
// which tells a whole fence from a half-replaced one without trusting the
// hook's own digests.
const (
	proxiesBefore = `['198.51.100.1:3128', '[2001:db8::1]:3128']`
	proxiesAfter  = `['198.51.100.2:3128', '[2001:db8::2]:3128']`
)

var (
	ruleBefore = regexp.MustCompile(`198\.51\.100\.1\b`)
	ruleAfter  = regexp.MustCompile(`198\.51\.100\.2\b`)
)

// `apply` SIGKILLed at any moment while it brings a running fence to a
// changed config leaves a fence that a record names (incomplete where the
// rules may be half-way), and status never calls a fence whole whose rules
// are not the policy its record names. The next create in the namespace,
// prune (its owner alive) or apply again makes the record complete and the
// fence whole, also when the config went back to the first before
// that apply (the record's policy, but not its rules). Each round is a fresh namespace whose fence is created
// under the first config, after which the config changes.
func TestApplyKilled(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			span := e.fullApply()
			t.Logf("a whole apply of one fence takes up to %s here; kills are swept across 0-%s", span, span)
			var k tally
			falseWhole := 0
			resolvedBy := map[string]int{}
			for i := range applyKills {
				d := killAt(i, applyKills, 0, span)
				e.setProxies(proxiesBefore)
				ns, c := e.fenced(t)
				e.setProxies(proxiesAfter)
				if !e.killedAfterCLI(d, "apply") {
					e.stop(t, ns, c)
					continue
				}
				k.count(t, e, ns, "apply", d)
				if !e.wholeIsTrue(t, ns) {
					falseWhole++
				}
				how := []string{"create", "prune", "apply", "apply after a revert"}[i%4]
				resolvedBy[how]++
				switch how {
				case "create":
					next := startIn(t, ns)
					if code, stderr := e.run("create", next.state()); code != 0 {
						t.Fatalf("the next create after a killed apply: exit %d: %s", code, stderr)
					}
					next.kill()
					if code, stderr := e.run("poststop", next.stopped()); code != 0 {
						t.Fatalf("the next container's poststop: exit %d: %s", code, stderr)
					}
				case "prune":
					if out, err := e.cli("prune", "--grace", "0"); err != nil {
						t.Fatalf("prune: %v\n%s", err, out)
					}
				case "apply", "apply after a revert":
					if how == "apply after a revert" {
						e.setProxies(proxiesBefore)
					}
					if out, err := e.cli("apply"); err != nil {
						t.Fatalf("apply again: %v\n%s", err, out)
					}
				}
				if l := e.look(ns); !l.fence || !l.record || l.incomplete || l.tmp > 0 {
					t.Errorf("apply killed after %s, then %s: %+v; want a fence and a complete record", d, how, l)
				}
				if st := e.statusOf(t, ns); st.Whole == nil || !*st.Whole || st.Incomplete != "" {
					t.Errorf("apply killed after %s, then %s: status %+v; want whole and complete", d, how, st)
				}
				if !e.wholeIsTrue(t, ns) {
					falseWhole++
				}
				e.stop(t, ns, c)
			}
			t.Logf("%s: %d applies killed mid-way: %s; %d times status called a fence whole that was not; resolved by %v",
				b, k.killed, k, falseWhole, resolvedBy)
			if falseWhole > 0 {
				t.Errorf("%d times status reported a fence whole whose rules are not its record's policy", falseWhole)
			}
			k.swept(t, "apply", applyKills, applyKills/4)
		})
	}
}

// setProxies rewrites the env's config with other proxies.
func (e *env) setProxies(proxies string) {
	e.t.Helper()
	data, err := os.ReadFile(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(l, "proxies:") {
			l = "proxies: " + proxies
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(e.cfgPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// fullApply times whole applies of one fence to a changed config and
// returns the median.
func (e *env) fullApply() time.Duration {
	e.t.Helper()
	return fullSpan(func() time.Duration {
		e.setProxies(proxiesBefore)
		ns, c := e.fenced(e.t)
		e.setProxies(proxiesAfter)
		start := time.Now()
		if out, err := e.cli("apply"); err != nil || !strings.Contains(out, "replaced") {
			e.t.Fatalf("apply: %v\n%s", err, out)
		}
		took := time.Since(start)
		if dump, _ := testnet.RulesIn(ns); !ruleAfter.MatchString(dump) || ruleBefore.MatchString(dump) {
			e.t.Fatalf("after apply the rules are not the new config's:\n%s", dump)
		}
		e.stop(e.t, ns, c)
		return took
	})
}

// stop ends the container and runs its poststop, which leaves nothing.
func (e *env) stop(t *testing.T, ns *testnet.Netns, c *container) {
	t.Helper()
	c.kill()
	if code, stderr := e.run("poststop", c.stopped()); code != 0 {
		t.Fatalf("poststop: exit %d: %s", code, stderr)
	}
	if l := e.look(ns); l.fence || l.record {
		t.Errorf("after the last poststop: %+v, want nothing", l)
	}
}

// fenceStatus is what `status --json` says of one fence.
type fenceStatus struct {
	Container  string `json:"container"`
	Netns      string `json:"netns"`
	Incomplete string `json:"incomplete"`
	Whole      *bool  `json:"whole"`
	NotWhole   string `json:"notWhole"`
}

// statusOf is status's entry for ns (zero when it has none).
func (e *env) statusOf(t *testing.T, ns *testnet.Netns) fenceStatus {
	t.Helper()
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(hookBin, "--config", e.cfgPath, "status", "--json").Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) { // exit 1: a fence not whole or incomplete
		t.Fatalf("status: %v", err)
	}
	var all []fenceStatus
	if err := json.Unmarshal(out, &all); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, f := range all {
		if f.Netns == id.String() {
			return f
		}
	}
	return fenceStatus{}
}

// wholeIsTrue checks status against the kernel: where status reports the
// fence of ns whole and its record complete, the rules must name the
// proxies of the record's policy and no other's. It is false when status
// says whole and they do not.
func (e *env) wholeIsTrue(t *testing.T, ns *testnet.Netns) bool {
	t.Helper()
	st := e.statusOf(t, ns)
	if st.Whole == nil || !*st.Whole || st.Incomplete != "" {
		return true
	}
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Policy struct {
			Proxies []string `json:"proxies"`
		} `json:"policy"`
	}
	data, err := os.ReadFile(e.stateDir + "/" + id.Key() + ".json")
	if err != nil || json.Unmarshal(data, &rec) != nil || len(rec.Policy.Proxies) == 0 {
		t.Errorf("status reports a whole fence whose record cannot be read: %v", err)
		return false
	}
	want, other := ruleBefore, ruleAfter
	if strings.HasPrefix(rec.Policy.Proxies[0], "198.51.100.2:") {
		want, other = ruleAfter, ruleBefore
	}
	dump, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	if !want.MatchString(dump) || other.MatchString(dump) {
		t.Errorf("status reports the fence whole for the policy of %v, but the rules are:\n%s", rec.Policy.Proxies, dump)
		return false
	}
	return true
}

// The moment of TestApplyKilled's "apply after a revert" made certain: an
// apply killed after it installed the new config's rules and before it
// saved their record leaves the record of the first config, marked
// incomplete, over the second's rules. The config goes back to the first:
// apply must put the first's rules back and complete the record, not call
// the fence current (the previous bypass-hook did, and left it so).
func TestApplyAfterRevertCompletes(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			e.setProxies(proxiesBefore)
			ns, c := e.fenced(t)
			id, err := netns.Stat(ns.Path)
			if err != nil {
				t.Fatal(err)
			}
			path := e.stateDir + "/" + id.Key() + ".json"
			first, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e.setProxies(proxiesAfter)
			if out, err := e.cli("apply"); err != nil || !strings.Contains(out, "replaced") {
				t.Fatalf("apply: %v\n%s", err, out)
			}
			var rec map[string]any
			if err := json.Unmarshal(first, &rec); err != nil {
				t.Fatal(err)
			}
			rec["incomplete"] = "install"
			data, _ := json.Marshal(rec)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			e.setProxies(proxiesBefore)
			out, err := e.cli("apply")
			if err != nil || !strings.Contains(out, "replaced") {
				t.Errorf("apply after the config went back, over an incomplete record: %v\n%s", err, out)
			}
			if l := e.look(ns); !l.fence || !l.record || l.incomplete {
				t.Errorf("after that apply: %+v, want a fence and a complete record", l)
			}
			if st := e.statusOf(t, ns); st.Whole == nil || !*st.Whole || st.Incomplete != "" {
				t.Errorf("after that apply: status %+v, want whole and complete", st)
			}
			if dump, _ := testnet.RulesIn(ns); !ruleBefore.MatchString(dump) || ruleAfter.MatchString(dump) {
				t.Errorf("after that apply the rules are not the first config's:\n%s", dump)
			}
			e.stop(t, ns, c)
		})
	}
}
