// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// monitorKills is how many monitors each backend's sweeps kill, during a
// repair and during a prune each.
const monitorKills = 10

// What the monitor logs when it has put a fence back, and when it has
// pruned one: the end of the span a kill is swept across.
const (
	msgRepaired = "the fence was not whole; put it back whole (--repair)"
	msgPruned   = "pruned a fence whose owners' processes are gone without a poststop"
)

// monitorArgs start a monitor that looks at once and often, without the
// parts this suite does not need (metrics, eBPF attribution).
var monitorArgs = []string{"monitor", "--metrics-addr", "", "--attribution=false", "--resync", "200ms"}

// monitorCmd is `bypass-hook monitor` on e's config with more flags.
func (e *env) monitorCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(hookBin, append(append([]string{"--config", e.cfgPath}, monitorArgs...), args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// untilLogged runs the monitor until it logs msg and returns how long that
// took from its start; it fails the test after 20 s.
func (e *env) untilLogged(msg string, args ...string) time.Duration {
	e.t.Helper()
	cmd := e.monitorCmd(args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	seen := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l struct{ Msg string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg {
				seen <- time.Since(start)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // the monitor never blocks on its log
	}()
	select {
	case d := <-seen:
		return d
	case <-time.After(20 * time.Second):
		e.t.Fatalf("the monitor did not log %q within 20 s", msg)
	}
	return 0
}

// restartUntil runs the monitor again, as its DaemonSet or unit restarts
// it, until done holds (at most 10 s), then stops it with SIGTERM.
func (e *env) restartUntil(t *testing.T, done func() bool, args ...string) bool {
	t.Helper()
	cmd := e.monitorCmd(args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if done() {
			return true
		}
	}
	return false
}

// sweep is the moment of kill i of n: random or evenly spaced, across the
// last three quarters of span, where the monitor has started and repairs
// or prunes (its start before that is the same whatever it is about to do).
func sweep(i, n int, span time.Duration) time.Duration {
	return killAt(i, n, span/4, span+span/10)
}

// tamper opens the fence of ns: an accept before its rules.
func tamper(t *testing.T, backend string, ns *testnet.Netns) {
	t.Helper()
	if backend == "nftables" {
		ns.Exec(t, "nft", "insert", "rule", "inet", "bypass_hook", "output", "accept")
		return
	}
	ns.Exec(t, "iptables", "-w", "-I", "OUTPUT", "1", "-j", "ACCEPT")
	ns.Exec(t, "ip6tables", "-w", "-I", "OUTPUT", "1", "-j", "ACCEPT")
}

// The monitor with --repair SIGKILLed around the moment it puts a tampered
// fence back: the record is never touched (complete, its policy), status
// never calls the fence whole when it is not, and the monitor started
// again puts the fence back whole.
func TestMonitorKilledDuringRepair(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			ns, c := e.fenced(t)
			notWhole := func() bool {
				st := e.statusOf(t, ns)
				return st.Whole != nil && !*st.Whole
			}
			var took []time.Duration
			for range 3 {
				tamper(t, b, ns)
				if !notWhole() {
					t.Fatal("status does not see the tampering")
				}
				took = append(took, e.untilLogged(msgRepaired, "--repair", "--prune=false"))
			}
			span := median(took)
			t.Logf("the monitor puts a tampered fence back %s after its start here; kills are swept across %s-%s", span, span/4, span+span/10)
			var killed, before, after, falseWhole, notRepaired int
			for i := range monitorKills {
				tamper(t, b, ns)
				d := sweep(i, monitorKills, span)
				if !e.killAfter(e.monitorCmd("--repair", "--prune=false"), d) {
					continue
				}
				killed++
				if l := e.look(ns); !l.fence || !l.record || l.incomplete {
					t.Errorf("monitor killed after %s: %+v; want a fence and a complete record", d, l)
				}
				if !e.wholeIsTrue(t, ns) {
					falseWhole++
				}
				if notWhole() {
					before++
				} else {
					after++
				}
				if !e.restartUntil(t, func() bool { return !notWhole() }, "--repair", "--prune=false") {
					notRepaired++
					t.Errorf("monitor killed after %s: the monitor started again did not put the fence back in 10 s", d)
				}
				if st := e.statusOf(t, ns); st.Whole == nil || !*st.Whole || st.Incomplete != "" {
					t.Errorf("monitor killed after %s, then started again: status %+v; want whole and complete", d, st)
				}
				if !e.wholeIsTrue(t, ns) {
					falseWhole++
				}
			}
			t.Logf("%s: %d monitors killed around a repair: %d before the fence was back, %d after; %d times status called a fence whole that was not; the monitor started again put it back %d of %d times",
				b, killed, before, after, falseWhole, killed-notRepaired, killed)
			if killed < monitorKills/2 {
				t.Errorf("only %d of %d kills came before the monitor's end", killed, monitorKills)
			}
			e.stop(t, ns, c)
		})
	}
}

// The monitor SIGKILLed around the moment it prunes a fence whose
// container is gone without a poststop: never rules without a record, and
// the monitor started again takes out fence and record both.
func TestMonitorKilledDuringPrune(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			abandoned := func() *testnet.Netns {
				ns, c := e.fenced(t)
				c.kill() // a runtime that never ran poststop
				return ns
			}
			var took []time.Duration
			for range 3 {
				ns := abandoned()
				took = append(took, e.untilLogged(msgPruned, "--prune-grace", "0"))
				if l := e.look(ns); l.fence || l.record {
					t.Fatalf("after the monitor's prune: %+v, want nothing", l)
				}
			}
			span := median(took)
			t.Logf("the monitor prunes an abandoned fence %s after its start here; kills are swept across %s-%s", span, span/4, span+span/10)
			var k tally
			notPruned := 0
			for i := range monitorKills {
				ns := abandoned()
				d := sweep(i, monitorKills, span)
				if !e.killAfter(e.monitorCmd("--prune-grace", "0"), d) {
					continue
				}
				k.count(t, e, ns, "monitor", d)
				// Fence and record gone, and what the killed monitor left of
				// the index and locks tidied: the monitor started again
				// sweeps at its start, which may come a moment after the
				// fence and record are seen gone (a kill after both went).
				gone := func() bool { l := e.look(ns); return !l.fence && !l.record && len(e.stateFiles()) == 0 }
				if !e.restartUntil(t, gone, "--prune-grace", "0") {
					notPruned++
					t.Errorf("monitor killed after %s: the monitor started again left %+v, and the state directory holds %v", d, e.look(ns), e.stateFiles())
				}
			}
			t.Logf("%s: %d monitors killed around a prune: %s; the monitor started again took out what was left %d of %d times",
				b, k.killed, k, k.killed-notPruned, k.killed)
			k.swept(t, "monitor", monitorKills, monitorKills/2)
		})
	}
}
