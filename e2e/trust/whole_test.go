// SPDX-License-Identifier: Apache-2.0

package trust

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// A tampering is what a careless operator, a CNI plugin or a workload with
// CAP_NET_ADMIN does to a fence in its namespace.
type tampering struct {
	name string
	// opens says the change lets the attacker's direct connections out, as
	// opposed to changing the fence without opening it.
	opens bool
	do    func(t *testing.T, ns *testnet.Netns)
}

// lineOf returns the 1-based position of the rule of chain whose `-S` line
// ends with suffix.
func lineOf(t *testing.T, ns *testnet.Netns, tool, chain, suffix string) string {
	t.Helper()
	n := 0
	for _, l := range strings.Split(ns.Exec(t, tool, "-w", "-S", chain), "\n") {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		n++
		if strings.HasSuffix(l, suffix) {
			return fmt.Sprint(n)
		}
	}
	t.Fatalf("%s -S %s has no rule ending in %q", tool, chain, suffix)
	return ""
}

// nftHandles returns the handles of the rules of our chain whose comments
// are names ("ipv4 refuse-tcp").
func nftHandles(t *testing.T, ns *testnet.Netns, names ...string) []string {
	t.Helper()
	out := ns.Exec(t, "nft", "-a", "list", "chain", "inet", "bypass_hook", "output")
	var hs []string
	for _, name := range names {
		m := regexp.MustCompile(`comment "` + name + `" # handle (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no rule %q in:\n%s", name, out)
		}
		hs = append(hs, m[1])
	}
	return hs
}

var tamperings = map[string][]tampering{
	"iptables": {
		{"accept-first", true, func(t *testing.T, ns *testnet.Netns) {
			ns.Exec(t, "iptables", "-w", "-I", "OUTPUT", "1", "-j", "ACCEPT")
			ns.Exec(t, "ip6tables", "-w", "-I", "OUTPUT", "1", "-j", "ACCEPT")
		}},
		{"rule-changed", true, func(t *testing.T, ns *testnet.Netns) {
			for _, tool := range []string{"iptables", "ip6tables"} {
				n := lineOf(t, ns, tool, "BYPASS-HOOK", "-p tcp -j REJECT --reject-with tcp-reset")
				ns.Exec(t, tool, "-w", "-R", "BYPASS-HOOK", n, "-j", "RETURN")
			}
		}},
		{"rules-removed", true, func(t *testing.T, ns *testnet.Netns) {
			ns.Exec(t, "iptables", "-w", "-D", "BYPASS-HOOK", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
			ns.Exec(t, "iptables", "-w", "-D", "BYPASS-HOOK", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
			ns.Exec(t, "ip6tables", "-w", "-D", "BYPASS-HOOK", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
			ns.Exec(t, "ip6tables", "-w", "-D", "BYPASS-HOOK", "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited")
		}},
	},
	"nftables": {
		{"accept-first", true, func(t *testing.T, ns *testnet.Netns) {
			ns.Exec(t, "nft", "insert", "rule", "inet", "bypass_hook", "output", "accept")
		}},
		{"rules-removed", true, func(t *testing.T, ns *testnet.Netns) {
			for _, h := range nftHandles(t, ns, "ipv4 refuse-tcp", "ipv6 refuse-tcp", "ipv4 refuse-other", "ipv6 refuse-other") {
				ns.Exec(t, "nft", "delete", "rule", "inet", "bypass_hook", "output", "handle", h)
			}
		}},
		// An accept in another base chain ends only that chain, so this
		// opens nothing; but the table no longer holds what was installed.
		{"chain-added", false, func(t *testing.T, ns *testnet.Netns) {
			ns.Exec(t, "nft", "add", "chain", "inet", "bypass_hook", "early", "{ type filter hook output priority -10 ; }")
			ns.Exec(t, "nft", "add", "rule", "inet", "bypass_hook", "early", "accept")
		}},
	},
}

// fenceStatus is what this test reads of `status --json`.
type fenceStatus struct {
	Container string `json:"container"`
	Whole     *bool  `json:"whole"`
	NotWhole  string `json:"notWhole"`
	Error     string `json:"error"`
}

func (e *env) status(id string) (fenceStatus, int) {
	e.t.Helper()
	code, out, stderr := e.run("", "status", "--json", id)
	var fs []fenceStatus
	if err := json.Unmarshal([]byte(out), &fs); err != nil || len(fs) != 1 {
		e.t.Fatalf("status --json %s: exit %d, %v: %s %s", id, code, err, out, stderr)
	}
	return fs[0], code
}

// fenceChecks is what `check --json --no-self-test` says of the fences on
// the node (section "fences").
func (e *env) fenceChecks() []checkItem {
	e.t.Helper()
	_, out, stderr := e.run("", "check", "--json", "--no-self-test")
	var rep struct {
		Checks []checkItem `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("check --json: %v: %s %s", err, out, stderr)
	}
	var fences []checkItem
	for _, it := range rep.Checks {
		if it.Section == "fences" {
			fences = append(fences, it)
		}
	}
	return fences
}

type checkItem struct {
	Section, Name, Status, Detail string
}

// reportsNotWhole holds that check warns of a fence that is not whole.
func reportsNotWhole(items []checkItem) bool {
	for _, it := range items {
		if it.Status == "warn" && strings.Contains(it.Detail, "not whole") {
			return true
		}
	}
	return false
}

// opensAsNobody holds that the attacker's direct connections get out.
func opensAsNobody(t *testing.T, ns *testnet.Netns, lab *testnet.Lab) {
	t.Helper()
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		r := testnet.RunProbeAs(ns, nobody, testnet.Probe{Kind: testnet.ProbeTCP, Addr: addr, Timeout: probeTimeout})
		if r.Err != nil {
			t.Fatalf("after the tampering, uid %d's direct connect to %s: %v; this tampering was meant to open the fence", nobody, addr, r.Err)
		}
	}
}

// Hole 3: a fence changed after it was installed. On main the next
// container's create said "joined the fence" and left it open. Now status
// says the fence is not whole, and the next create makes it whole again
// with a warning in the hook log.
func TestFenceMadeWholeAgain(t *testing.T) {
	testnet.RequireTools(t, "iptables", "ip6tables", "nft")
	lab := testnet.NewLab(t)
	for _, backend := range backends {
		for _, tm := range tamperings[backend] {
			t.Run(backend+"/"+tm.name, func(t *testing.T) {
				client := lab.AddClient(t)
				e := newEnv(t, lab, backend, "")
				first := startIn(t, client.Netns)
				e.create(first)
				refusedAsNobody(t, client.Netns, lab.TCPV4)
				if st, code := e.status(first.id); st.Whole == nil || !*st.Whole || code != 0 {
					t.Errorf("status of a fence just installed: exit %d, %+v; want whole", code, st)
				}

				tm.do(t, client.Netns)
				if tm.opens {
					opensAsNobody(t, client.Netns, lab)
				}
				st, code := e.status(first.id)
				if st.Whole == nil || *st.Whole || st.NotWhole == "" || code != 1 {
					t.Errorf("status after %s: exit %d, %+v; want exit 1, whole false and what is wrong", tm.name, code, st)
				}
				if items := e.fenceChecks(); !reportsNotWhole(items) {
					t.Errorf("check after %s says of the fences %+v; want a warning that one is not whole", tm.name, items)
				}

				second := startIn(t, client.Netns)
				e.create(second)
				if log := e.log(); !strings.Contains(log, `"level":"warning"`) || !strings.Contains(log, "not whole") {
					t.Errorf("the joining create logged no warning about the fence not being whole; hook log:\n%s", log)
				}
				refusedAsNobody(t, client.Netns, lab.TCPV4)
				refusedAsNobody(t, client.Netns, lab.TCPV6)
				testnet.ExpectFenced(t, client.Netns, lab)
				if st, code := e.status(second.id); st.Whole == nil || !*st.Whole || code != 0 {
					t.Errorf("status after the repair: exit %d, %+v; want whole", code, st)
				}
				if items := e.fenceChecks(); reportsNotWhole(items) {
					t.Errorf("check after the repair still warns: %+v", items)
				}
			})
		}
	}
}

// The monitor notices a fence that stops being whole: one event on stdout
// and the gauge bypass_hook_fences_not_whole; it repairs nothing unasked.
func TestMonitorSeesFenceNotWhole(t *testing.T) {
	testnet.RequireTools(t, "iptables", "ip6tables", "nft")
	lab := testnet.NewLab(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			c := startIn(t, client.Netns)
			e.create(c)

			addr, events := startMonitor(t, e)
			if n := gauge(t, addr, "bypass_hook_fences_not_whole"); n != "0" {
				t.Errorf("bypass_hook_fences_not_whole before the tampering: %q, want 0", n)
			}

			tamperings[backend][0].do(t, client.Netns)
			deadline := time.After(15 * time.Second)
		wait:
			for {
				select {
				case ev := <-events:
					if ev["action"] == "not-whole" {
						t.Logf("event: %v", ev)
						if ev["container"] != c.id {
							t.Errorf("the event names %v, want %s", ev["container"], c.id)
						}
						break wait
					}
				case <-deadline:
					t.Fatal("no not-whole event within 15 s of the tampering")
				}
			}
			if n := gauge(t, addr, "bypass_hook_fences_not_whole"); n != "1" {
				t.Errorf("bypass_hook_fences_not_whole after the tampering: %q, want 1", n)
			}
			// Unasked, the monitor repairs nothing.
			opensAsNobody(t, client.Netns, lab)
		})
	}
}

// With --repair the monitor puts a fence that is not whole back.
func TestMonitorRepairsWhenAsked(t *testing.T) {
	testnet.RequireTools(t, "iptables", "ip6tables", "nft")
	lab := testnet.NewLab(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			e.create(startIn(t, client.Netns))
			startMonitor(t, e, "--repair")
			tamperings[backend][0].do(t, client.Netns)
			for deadline := time.Now().Add(15 * time.Second); ; {
				st, _ := e.status("")
				if st.Whole != nil && *st.Whole {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the monitor with --repair did not put the fence back in 15 s: %+v", st)
				}
				time.Sleep(500 * time.Millisecond)
			}
			refusedAsNobody(t, client.Netns, lab.TCPV4)
			refusedAsNobody(t, client.Netns, lab.TCPV6)
		})
	}
}

// startMonitor runs `bypass-hook monitor` on e's config, resyncing every
// second, until the test ends; it returns the metrics address and the
// events it prints.
func startMonitor(t *testing.T, e *env, args ...string) (string, <-chan map[string]any) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, hookBin, append([]string{"--config", e.cfgPath, "monitor", "--metrics-addr", "127.0.0.1:0", "--resync", "1s"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	metrics := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l struct{ Msg, Metrics string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "monitor started" {
				metrics <- l.Metrics
			}
		}
	}()
	events := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
	}()
	select {
	case addr := <-metrics:
		return addr, events
	case <-time.After(20 * time.Second):
		t.Fatal("the monitor did not start in 20 s")
	}
	return "", nil
}

// gauge reads one unlabelled series from the monitor's metrics.
func gauge(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return "absent"
	}
	return string(m[1])
}
