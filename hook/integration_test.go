// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	hookbackend "github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Timeouts long enough that a fence that drops instead of refusing shows
// up as a timeout, not as a pass.
const probeTimeout = 3 * time.Second

func expectRefused(t *testing.T, what string, elapsed time.Duration, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: got through; want ECONNREFUSED", what)
	case testnet.IsTimeout(err):
		t.Errorf("%s: timed out after %v; want an immediate ECONNREFUSED", what, elapsed)
	case !errors.Is(err, syscall.ECONNREFUSED):
		t.Errorf("%s: %v; want ECONNREFUSED", what, err)
	default:
		t.Logf("%s: refused in %.2f ms", what, float64(elapsed.Microseconds())/1000)
	}
}

func expectOK(t *testing.T, what string, elapsed time.Duration, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v; want it to work", what, err)
		return
	}
	t.Logf("%s: ok in %.2f ms", what, float64(elapsed.Microseconds())/1000)
}

// The fence in a namespace does what the contract says, for each backend.
func TestFenceSemantics(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			// The UDP echo server is allowed, as a resolver would be.
			e := newEnv(t, lab, backend, fmt.Sprintf("allowUids: [1337]\nallow: [{cidr: %s/32, ports: [%d], protocol: udp}]\n", lab.ServerV4, testnet.UDPPort))
			c := startIn(t, client.Netns)
			before := rulesIn(t, client.Netns)

			// Unfenced, direct traffic gets out: the lab is a fair test.
			_, err := testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectOK(t, "unfenced direct TCP", 0, err)

			res, err := e.create(c.state())
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			t.Logf("create: %+v", res)

			body, el, err := testnet.HTTPViaProxy(client.Netns, lab.ProxyV4, lab.URLV4, probeTimeout)
			expectOK(t, "GET through the IPv4 proxy", el, err)
			if err == nil && body != testnet.LabBody {
				t.Errorf("proxied body %q", body)
			}
			_, el, err = testnet.HTTPConnect(client.Netns, lab.ProxyV6, lab.URLV6, probeTimeout)
			expectOK(t, "CONNECT through the IPv6 proxy", el, err)
			_, el, err = testnet.HTTPConnect(client.Netns, lab.ProxyV4, lab.URLV6, probeTimeout)
			expectOK(t, "CONNECT through the IPv4 proxy to an IPv6 server", el, err)

			el, err = testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectRefused(t, "direct TCP over IPv4", el, err)
			el, err = testnet.DialTCP(client.Netns, lab.TCPV6, probeTimeout)
			expectRefused(t, "direct TCP over IPv6", el, err)
			_, el, err = testnet.HTTPDirect(client.Netns, lab.URLV6, probeTimeout)
			expectRefused(t, "direct HTTP over IPv6", el, err)
			// The proxy's address on another port is not the proxy.
			el, err = testnet.DialTCP(client.Netns, net.JoinHostPort(lab.ServerV4.String(), "8080"), probeTimeout)
			expectRefused(t, "the proxy's host on another port", el, err)
			el, err = testnet.UDPExchange(client.Netns, lab.UDPV6, probeTimeout)
			expectRefused(t, "UDP over IPv6", el, err)
			el, err = testnet.UDPExchange(client.Netns, lab.UDPV4, probeTimeout)
			expectOK(t, "UDP to an allow entry", el, err)
			el, err = testnet.Loopback(client.Netns, probeTimeout)
			expectOK(t, "loopback", el, err)
			r := testnet.RunProbeAs(client.Netns, 1337, testnet.Probe{Kind: testnet.ProbeTCP, Addr: lab.TCPV6, Timeout: probeTimeout})
			expectOK(t, "direct TCP as allowed uid 1337", r.Elapsed, r.Err)
			r = testnet.RunProbeAs(client.Netns, 1000, testnet.Probe{Kind: testnet.ProbeTCP, Addr: lab.TCPV4, Timeout: probeTimeout})
			expectRefused(t, "direct TCP as uid 1000", r.Elapsed, r.Err)
			expectPingRefused(t, client.Netns, lab.ServerV4.String())
			if n := packets(t, backend, client.Netns, e.records()[0])["refuse-other"]; n == 0 {
				t.Error("ping was not refused by the refuse-other rule (admin prohibited)")
			}

			recs := e.records()
			if len(recs) != 1 || len(recs[0].Owners) != 1 || recs[0].Owners[0].ID != c.id || recs[0].Backend != backend {
				t.Fatalf("records after create: %+v", recs)
			}

			if _, err := e.poststop(c.id); err != nil {
				t.Fatalf("poststop: %v", err)
			}
			if after := rulesIn(t, client.Netns); after != before {
				t.Errorf("rules after poststop differ from before create:\n%s", testnet.Diff(before, after))
			}
			if recs := e.records(); len(recs) != 0 {
				t.Errorf("records left after poststop: %+v", recs)
			}
			_, err = testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectOK(t, "direct TCP after poststop", 0, err)
			if log := e.hookLog(); !strings.Contains(log, "fence summary") {
				t.Errorf("the last poststop must log a summary of the counters; log:\n%s", log)
			}
		})
	}
}

// packets sums the fence's counters by rule name.
func packets(t *testing.T, backend string, ns *testnet.Netns, rec *records.Record) map[string]uint64 {
	t.Helper()
	b, err := hookbackend.New(backend)
	if err != nil {
		t.Fatal(err)
	}
	counters, err := b.Counters(nsOf(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]uint64{}
	for fam, names := range rec.RuleNames {
		for i, n := range names {
			sums[n] += counters[fam][i]
		}
	}
	return sums
}

// Other protocols get ICMP admin prohibited: ping fails at once.
func expectPingRefused(t *testing.T, ns *testnet.Netns, addr string) {
	t.Helper()
	testnet.RequireTools(t, "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out, err := ns.Command(ctx, "busybox", "ping", "-c", "1", "-W", "3", addr).CombinedOutput()
	el := time.Since(start)
	if err == nil {
		t.Errorf("ping %s got through:\n%s", addr, out)
		return
	}
	if el > 2*time.Second {
		t.Errorf("ping %s: failed only after %v; want an immediate refusal:\n%s", addr, el, out)
		return
	}
	t.Logf("ping (ICMP, other protocol): refused in %.0f ms: %s", float64(el.Microseconds())/1000, strings.TrimSpace(string(out)))
}

func TestAuditMode(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "mode: audit\n")
			c := startIn(t, client.Netns)
			if _, err := e.create(c.state()); err != nil {
				t.Fatal(err)
			}
			el, err := testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectOK(t, "direct TCP in audit mode", el, err)
			el, err = testnet.UDPExchange(client.Netns, lab.UDPV6, probeTimeout)
			expectOK(t, "UDP in audit mode", el, err)

			logged := packets(t, backend, client.Netns, e.records()[0])
			if logged["log-tcp"] == 0 || logged["log-udp"] == 0 {
				t.Errorf("audit mode must log what it would refuse; counters %v", logged)
			}
			if logged["audit-tcp"] == 0 || logged["audit-udp"] == 0 {
				t.Errorf("audit mode must count what it lets through; counters %v", logged)
			}
			for n := range logged {
				if strings.HasPrefix(n, "refuse-") {
					t.Errorf("audit mode installed a refusing rule %q", n)
				}
			}
		})
	}
}

// Installing twice is installing once, through the hook and the backend.
func TestIdempotent(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\n")
			c := startIn(t, ns)
			if _, err := e.create(c.state()); err != nil {
				t.Fatal(err)
			}
			once := rulesIn(t, ns)
			recOnce, _ := json.Marshal(e.records())
			if code, stderr := e.runBin("create", *c.state()); code != 0 {
				t.Fatalf("second create through the binary: exit %d: %s", code, stderr)
			}
			if twice := rulesIn(t, ns); twice != once {
				t.Errorf("a second create changed the rules:\n%s", testnet.Diff(once, twice))
			}
			if recs := e.records(); len(recs) != 1 || len(recs[0].Owners) != 1 {
				t.Errorf("a second create of one container must leave one owner: %+v", recs)
			}
			// The same process again (the NRI plugin's synchronization after
			// a restart): its entry is kept as it was, since when it is fenced.
			if recTwice, _ := json.Marshal(e.records()); string(recTwice) != string(recOnce) {
				t.Errorf("a second create of the same process changed the record:\n%s\n%s", recOnce, recTwice)
			}

			// The backend alone: Install over an installed fence replaces it.
			b, _ := hookbackend.New(backend)
			rec := e.records()[0]
			rs := rules.NewRuleSet(rec.Policy, rec.LogID, rec.Features)
			if err := b.Install(nsOf(t, ns), rs); err != nil {
				t.Fatalf("Install over the same fence: %v", err)
			}
			if again := rulesIn(t, ns); again != once {
				t.Errorf("Install over the same fence changed the rules:\n%s", testnet.Diff(once, again))
			}
			if ok, err := installed(b, nsOf(t, ns)); !ok || err != nil {
				t.Errorf("Installed = %v, %v", ok, err)
			}
			if _, err := e.poststop(c.id); err != nil {
				t.Fatal(err)
			}
			if _, err := e.poststop(c.id); err != nil {
				t.Errorf("a second poststop must be harmless: %v", err)
			}
		})
	}
}

// A rule the kernel (or the tools) refuse part way through leaves the
// namespace exactly as it was: empty, or with the fence it had. Each
// backend's bad rule is one it renders and the kernel or the tools refuse
// (the error must say so): a protocol iptables-restore does not know, a log
// prefix longer than nf_tables takes (127 bytes).
func TestRollback(t *testing.T) {
	bads := map[string]rules.Rule{
		config.BackendIptables: {Name: "bad", Proto: "no-such-protocol", Action: rules.Accept},
		config.BackendNftables: {Name: "bad", Action: rules.Log, Log: &rules.LogSpec{Target: config.LogKernel,
			Prefix: strings.Repeat("x", 200), RatePer: 1, RateUnit: "second", Burst: 1}},
	}
	refusedBy := map[string]string{config.BackendIptables: "tables-restore", config.BackendNftables: "nf_tables transaction"}
	for _, backend := range backends(t) {
		bad := bads[backend]
		t.Run(backend, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\n")
			d, err := e.cfg.Decide(nil)
			if err != nil {
				t.Fatal(err)
			}
			good := rules.NewRuleSet(d.Policy, "rollback-test", rules.AllFeatures)
			withBad := func(fam rules.Family) rules.RuleSet {
				rs := rules.RuleSet{}
				for f, famRules := range good {
					rs[f] = append([]rules.Rule{}, famRules...)
				}
				mid := len(rs[fam]) / 2
				rs[fam] = append(rs[fam][:mid], append([]rules.Rule{bad}, rs[fam][mid:]...)...)
				return rs
			}
			b, err := hookbackend.New(backend)
			if err != nil {
				t.Fatal(err)
			}
			target := nsOf(t, ns)

			for _, state := range []string{"empty", "fenced"} {
				if state == "fenced" {
					if err := b.Install(target, good); err != nil {
						t.Fatal(err)
					}
				}
				before := rulesIn(t, ns)
				for _, fam := range rules.Families {
					if err := b.Install(target, withBad(fam)); err == nil {
						t.Fatalf("%s namespace: Install with a bad %s rule succeeded", state, fam)
					} else if !strings.Contains(err.Error(), refusedBy[backend]) {
						t.Errorf("%s namespace, bad %s rule: %v; want it refused by the %s", state, fam, err, refusedBy[backend])
					} else {
						t.Logf("%s namespace, bad %s rule: %v", state, fam, err)
					}
					if after := rulesIn(t, ns); after != before {
						t.Errorf("%s namespace: a bad %s rule left changes:\n%s", state, fam, testnet.Diff(before, after))
					}
				}
			}
			if err := b.Remove(target); err != nil {
				t.Fatal(err)
			}
			if err := b.Remove(target); err != nil {
				t.Errorf("Remove of a fence already gone: %v", err)
			}
		})
	}
}

// The hook refuses its own namespace, played here by a stand-in "host"
// namespace that the hook runs in, and changes nothing there.
func TestHostGuard(t *testing.T) {
	for _, failure := range []string{"closed", "open"} {
		t.Run(failure, func(t *testing.T) {
			host := testnet.NewNetns(t)
			e := newEnv(t, nil, config.BackendIptables, "proxies: ['198.51.100.1:3128']\nfailure: "+failure+"\n")
			c := startIn(t, host)
			before := rulesIn(t, host)
			code, stderr := e.runBin("create", *c.state(), "nsenter", "--net="+host.Path, "--")
			t.Logf("exit %d: %s", code, stderr)
			want := map[string]int{"closed": 1, "open": 0}[failure]
			if code != want {
				t.Errorf("exit %d, want %d", code, want)
			}
			if !strings.Contains(stderr, "host's network namespace") {
				t.Errorf("stderr must say the container shares the host's namespace: %q", stderr)
			}
			if after := rulesIn(t, host); after != before {
				t.Errorf("the hook changed the rules of its own namespace:\n%s", testnet.Diff(before, after))
			}
			if recs := e.records(); len(recs) != 0 {
				t.Errorf("records: %+v", recs)
			}
		})
	}
}

// Containers sharing a namespace share one fence; it leaves with the last.
func TestSharedNamespace(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			pause, app := startIn(t, client.Netns), startIn(t, client.Netns)
			before := rulesIn(t, client.Netns)
			if _, err := e.create(pause.state()); err != nil {
				t.Fatal(err)
			}
			fenced := rulesIn(t, client.Netns)
			res, err := e.create(app.state())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(res.Action, pause.id) {
				t.Errorf("the second container's create should join the first's fence: %+v", res)
			}
			if now := rulesIn(t, client.Netns); now != fenced {
				t.Errorf("the second container changed the rules:\n%s", testnet.Diff(fenced, now))
			}
			if recs := e.records(); len(recs) != 1 || len(recs[0].Owners) != 2 {
				t.Fatalf("want one record with two owners: %+v", recs)
			}

			// A container whose own annotations ask for another policy is
			// refused, naming the first.
			third := startIn(t, client.Netns)
			narrowed := third.state()
			narrowed.Annotations = map[string]string{config.AnnProxies: lab.ProxyV4}
			_, err = e.create(narrowed)
			var refused *hook.RefusedError
			if !errors.As(err, &refused) || !strings.Contains(err.Error(), pause.id) || !strings.Contains(err.Error(), "annotations") {
				t.Errorf("annotations asking for another policy: want a refusal naming %s, got %v", pause.id, err)
			}
			if hook.ExitCode(err, config.FailOpen) != 1 {
				t.Error("a policy conflict must fail the container even under failure: open")
			}
			// A config that asks for another backend: the namespace keeps
			// the one its fence is in, and the container joins.
			for _, other := range backends(t) {
				if other == backend {
					continue
				}
				o := newEnv(t, lab, other, "")
				o.cfg.StateDir = e.cfg.StateDir
				res, err := o.create(third.state())
				if err != nil || res.Backend != backend {
					t.Errorf("backend %s configured over a %s fence: want to join it, got %+v, %v", other, backend, res, err)
				}
				if _, err := o.poststop(third.id); err != nil {
					t.Fatal(err)
				}
			}
			if now := rulesIn(t, client.Netns); now != fenced {
				t.Errorf("a refused container changed the rules:\n%s", testnet.Diff(fenced, now))
			}

			if _, err := e.poststop(pause.id); err != nil {
				t.Fatal(err)
			}
			el, err := testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectRefused(t, "direct TCP while one owner remains", el, err)
			if _, err := e.poststop(app.id); err != nil {
				t.Fatal(err)
			}
			if after := rulesIn(t, client.Netns); after != before {
				t.Errorf("rules after the last poststop:\n%s", testnet.Diff(before, after))
			}
		})
	}
}

// The operator adds an allow entry while a pod runs: a container that
// starts in the pod's namespace afterwards (a restart, a sidecar) joins, and
// the namespace's fence follows the newest config, replaced in place.
func TestConfigChangeInSharedNamespace(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			pause, app := startIn(t, client.Netns), startIn(t, client.Netns)
			if _, err := e.create(pause.state()); err != nil {
				t.Fatal(err)
			}
			el, err := testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectRefused(t, "direct TCP before the allow entry", el, err)
			old := e.records()[0].Digest

			changed := newEnv(t, lab, backend, fmt.Sprintf("allow: [{cidr: %s/32, ports: [%d], protocol: tcp}]\n", lab.ServerV4, testnet.TCPPort))
			changed.cfg.StateDir, changed.cfg.HookLog = e.cfg.StateDir, e.cfg.HookLog
			changed.log = e.log
			res, err := changed.create(app.state())
			if err != nil {
				t.Fatalf("a container joining after a config change: %v", err)
			}
			if !strings.Contains(res.Action, pause.id) {
				t.Errorf("want it to join %s's fence: %+v", pause.id, res)
			}
			el, err = testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectOK(t, "direct TCP to the new allow entry", el, err)
			el, err = testnet.DialTCP(client.Netns, lab.TCPV6, probeTimeout)
			expectRefused(t, "direct TCP elsewhere", el, err)
			recs := changed.records()
			d, _ := changed.cfg.Decide(nil)
			if len(recs) != 1 || len(recs[0].Owners) != 2 || recs[0].Digest != d.Policy.Digest() || len(recs[0].Policy.Allow) != 1 {
				t.Fatalf("want one record of two owners with the new policy %s: %+v", d.Policy.Digest(), recs)
			}
			if log := e.hookLog(); !strings.Contains(log, "follows the newest config") || !strings.Contains(log, old) || !strings.Contains(log, d.Policy.Digest()) {
				t.Errorf("the hook log must say the fence followed the config, with the old and new digests; log:\n%s", log)
			}
			// Status's check of the fence: whole as replaced.
			b, _ := hookbackend.New(backend)
			seen, err := b.Inspect(nsOf(t, client.Netns))
			if whole, why := seen.Whole(recs[0].RulesDigest); err != nil || !whole {
				t.Errorf("the replaced fence is not whole: %s %v", why, err)
			}
			for _, id := range []string{pause.id, app.id} {
				if _, err := changed.poststop(id); err != nil {
					t.Fatal(err)
				}
			}
			if ok, _ := installed(b, nsOf(t, client.Netns)); ok {
				t.Error("the fence outlived its last owner")
			}
		})
	}
}

// A container created again under its id (a restart in a namespace that
// outlives it) keeps its fence when another container joins and leaves.
func TestRecreatedContainerKeepsFence(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128']\n")
			web := startIn(t, ns)
			if _, err := e.create(web.state()); err != nil {
				t.Fatal(err)
			}
			web.kill() // died without a poststop
			again := startIn(t, ns)
			again.id = web.id
			res, err := e.create(again.state())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("create again: %s", res.Action)
			side := startIn(t, ns)
			if _, err := e.create(side.state()); err != nil {
				t.Fatal(err)
			}
			if _, err := e.poststop(side.id); err != nil {
				t.Fatal(err)
			}
			b, _ := hookbackend.New(backend)
			if ok, err := installed(b, nsOf(t, ns)); !ok || err != nil {
				t.Fatalf("the recreated container %s lost its fence when another left: %v", web.id, err)
			}
			recs := e.records()
			if len(recs) != 1 || len(recs[0].Owners) != 1 || recs[0].Owners[0].Pid != again.pid() {
				t.Errorf("want the recreated container as the one owner with its new pid %d: %+v", again.pid(), recs)
			}
			if _, err := e.poststop(web.id); err != nil {
				t.Fatal(err)
			}
			if ok, _ := installed(b, nsOf(t, ns)); ok {
				t.Error("the fence outlived its last owner")
			}
		})
	}
}

// Twenty hooks at once, as a node starting twenty containers: all fenced.
func TestParallelBurst(t *testing.T) {
	const n = 20
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\n")
			var nss []*testnet.Netns
			var ctrs []*container
			for range n {
				ns := testnet.NewNetns(t)
				nss = append(nss, ns)
				ctrs = append(ctrs, startIn(t, ns))
			}
			var wg sync.WaitGroup
			codes := make([]int, n)
			errs := make([]string, n)
			start := time.Now()
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					codes[i], errs[i] = e.runBin("create", *ctrs[i].state())
				}()
			}
			wg.Wait()
			t.Logf("%d parallel creates took %v", n, time.Since(start))
			b, _ := hookbackend.New(backend)
			for i := range n {
				if codes[i] != 0 {
					t.Errorf("create %d: exit %d: %s", i, codes[i], errs[i])
					continue
				}
				if ok, err := installed(b, nsOf(t, nss[i])); !ok || err != nil {
					t.Errorf("namespace %d is not fenced: %v", i, err)
				}
			}
			if recs := e.records(); len(recs) != n {
				t.Errorf("%d records, want %d", len(recs), n)
			}
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st := specs.State{ID: ctrs[i].id, Status: specs.StateStopped, Bundle: testBundle}
					codes[i], errs[i] = e.runBin("poststop", st)
				}()
			}
			wg.Wait()
			for i := range n {
				if codes[i] != 0 {
					t.Errorf("poststop %d: exit %d: %s", i, codes[i], errs[i])
				}
				if ok, _ := installed(b, nsOf(t, nss[i])); ok {
					t.Errorf("namespace %d is still fenced after poststop", i)
				}
			}
			if recs := e.records(); len(recs) != 0 {
				t.Errorf("%d records left", len(recs))
			}
		})
	}
}

// Poststop has no pid: it finds the namespace through /run/netns, the
// bundle's config.json, or not at all when the namespace is gone.
func TestPoststopFindsNamespace(t *testing.T) {
	backend := config.BackendIptables
	t.Run("pinned in /run/netns", func(t *testing.T) {
		ns := testnet.NewNetns(t)
		e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128']\n")
		before := rulesIn(t, ns)
		c := startIn(t, ns)
		if _, err := e.create(c.state()); err != nil {
			t.Fatal(err)
		}
		c.kill() // the record's /proc/PID path is gone now
		if code, stderr := e.runBin("poststop", specs.State{ID: c.id, Status: specs.StateStopped, Bundle: testBundle}); code != 0 {
			t.Fatalf("poststop: exit %d: %s", code, stderr)
		}
		if after := rulesIn(t, ns); after != before {
			t.Errorf("rules left:\n%s", testnet.Diff(before, after))
		}
	})
	t.Run("bundle path", func(t *testing.T) {
		ns := testnet.NewNetns(t)
		// Pin the namespace where no scan looks, as some runtimes do.
		pin := filepath.Join(t.TempDir(), "netns")
		if err := os.WriteFile(pin, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount(ns.Path, pin, "", syscall.MS_BIND, ""); err != nil {
			t.Fatalf("bind-mounting the namespace: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(pin, syscall.MNT_DETACH) })
		bundle := t.TempDir()
		spec := fmt.Sprintf(`{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"network","path":%q}]}}`, pin)
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128']\n")
		c := startIn(t, ns)
		st := c.state()
		st.Bundle = bundle
		if _, err := e.create(st); err != nil {
			t.Fatal(err)
		}
		c.kill()
		// Hide the /run/netns path so only the bundle's leads there.
		if err := syscall.Unmount(ns.Path, syscall.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Mount(pin, ns.Path, "", syscall.MS_BIND, "") })
		if _, ok := netns.Find(nsOf(t, &testnet.Netns{Path: pin}).ID); ok {
			t.Skip("the namespace is still reachable without the bundle path; cannot test the bundle hint")
		}
		if _, err := e.hook().Poststop(&specs.State{ID: c.id, Status: specs.StateStopped, Bundle: bundle}); err != nil {
			t.Fatal(err)
		}
		b, _ := hookbackend.New(backend)
		if ok, _ := installed(b, netns.Handle{Path: pin}); ok {
			t.Error("poststop did not find the namespace through the bundle's config.json")
		}
	})
	t.Run("gone", func(t *testing.T) {
		e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128']\n")
		c := startUnshared(t)
		if _, err := e.create(c.state()); err != nil {
			t.Fatal(err)
		}
		c.kill()
		code, stderr := e.runBin("poststop", specs.State{ID: c.id, Status: specs.StateStopped, Bundle: testBundle})
		if code != 0 {
			t.Fatalf("poststop of a container whose namespace is gone: exit %d: %s", code, stderr)
		}
		if recs := e.records(); len(recs) != 0 {
			t.Errorf("records left: %+v", recs)
		}
		if !strings.Contains(e.hookLog(), "namespace gone") {
			t.Errorf("the hook log should say the namespace was gone:\n%s", e.hookLog())
		}
	})
	t.Run("unknown container", func(t *testing.T) {
		e := newEnv(t, nil, backend, "proxies: ['198.51.100.1:3128']\n")
		if code, stderr := e.runBin("poststop", specs.State{ID: "never-created", Status: specs.StateStopped}); code != 0 {
			t.Errorf("poststop of an unknown container: exit %d: %s", code, stderr)
		}
	})
}

// A runtime that crashed never ran poststop: the next create prunes the
// record of a namespace that no longer exists.
func TestPrune(t *testing.T) {
	e := newEnv(t, nil, config.BackendIptables, "proxies: ['198.51.100.1:3128']\n")
	dead := startUnshared(t)
	if _, err := e.create(dead.state()); err != nil {
		t.Fatal(err)
	}
	dead.kill()
	// The kernel frees a namespace a moment after its last process is
	// reaped; until then it exists, and its record rightly stays.
	waitNamespaceFreed(t, e.records())
	// Records younger than a couple of seconds are spared; age this one.
	old := time.Now().Add(-time.Minute)
	for _, r := range e.records() {
		p := filepath.Join(e.cfg.StateDir, r.Netns.Key()+".json")
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	live := startIn(t, testnet.NewNetns(t))
	if _, err := e.create(live.state()); err != nil {
		t.Fatal(err)
	}
	recs := e.records()
	if len(recs) != 1 || recs[0].Owners[0].ID != live.id {
		t.Errorf("want only the live container's record, got %+v", recs)
	}
}

// waitNamespaceFreed waits up to 5 s until the kernel has freed the
// namespace of each record (its file handle no longer opens).
func waitNamespaceFreed(t *testing.T, recs []*records.Record) {
	t.Helper()
	for _, r := range recs {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			exists, known := netns.Exists(r.Netns, r.NsHandle)
			if !exists || !known {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespace %s still exists 5 s after its last process was killed", r.Netns.Key())
			}
		}
	}
}

// Bad input changes nothing: the namespace keeps its rules, no record.
func TestBadInputChangesNothing(t *testing.T) {
	ns := testnet.NewNetns(t)
	c := startIn(t, ns)
	before := rulesIn(t, ns)
	good := newEnv(t, nil, config.BackendIptables, "proxies: ['198.51.100.1:3128']\n")
	for _, tc := range []struct {
		name, cfg string
		ann       map[string]string
		code      int
	}{
		{"widening annotation", good.cfgPath, map[string]string{config.AnnEnabled: "false"}, 2},
		{"proxy outside the config", good.cfgPath, map[string]string{config.AnnProxies: "198.51.100.99:3128"}, 2},
		{"missing named config", "/nonexistent/config.yaml", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := *c.state()
			st.Annotations = tc.ann
			code, stderr := runHookBin(t, tc.cfg, "create", st)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, stderr)
			}
			if after := rulesIn(t, ns); after != before {
				t.Errorf("rules changed:\n%s", testnet.Diff(before, after))
			}
		})
	}
	// A pid that is gone.
	gone := startUnshared(t)
	st := *gone.state()
	gone.kill()
	if code, stderr := good.runBin("create", st); code != 1 || !strings.Contains(stderr, fmt.Sprint(st.Pid)) {
		t.Errorf("gone pid: exit %d: %s", code, stderr)
	}
	if recs := good.records(); len(recs) != 0 {
		t.Errorf("records: %+v", recs)
	}
}

// Without the conntrack match only new TCP connections are refused, so a
// server in the container still answers.
func TestNoConntrack(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			d, _ := e.cfg.Decide(nil)
			rs := rules.NewRuleSet(d.Policy, "no-conntrack", rules.Features{Log: true})
			b, _ := hookbackend.New(backend)
			target := nsOf(t, client.Netns)
			if err := b.Install(target, rs); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Remove(target) })

			client.Netns.Answer(t, ":7000", "hi")
			inbound := &testnet.Netns{Name: lab.Server.Name, Path: lab.Server.Path}
			for _, addr := range []string{net.JoinHostPort(client.V4.String(), "7000"), net.JoinHostPort(client.V6.String(), "7000")} {
				el, err := testnet.DialTCP(inbound, addr, probeTimeout)
				expectOK(t, "inbound TCP to a server in the container "+addr, el, err)
			}
			el, err := testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectRefused(t, "new outbound TCP", el, err)
			_, el, err = testnet.HTTPViaProxy(client.Netns, lab.ProxyV6, lab.URLV4, probeTimeout)
			expectOK(t, "the proxy", el, err)
		})
	}
}

// strict refuses a container with CAP_NET_RAW; otherwise the log warns.
func TestCapabilities(t *testing.T) {
	ns := testnet.NewNetns(t)
	bundle := t.TempDir()
	spec := `{"ociVersion":"1.0.2","process":{"capabilities":{"bounding":["CAP_NET_RAW"],"effective":["CAP_NET_RAW"]}}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startIn(t, ns)
	st := c.state()
	st.Bundle = bundle
	before := rulesIn(t, ns)

	strict := newEnv(t, nil, config.BackendIptables, "proxies: ['198.51.100.1:3128']\nstrict: true\nfailure: open\n")
	_, err := strict.create(st)
	var refused *hook.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Errorf("strict: want a refusal naming CAP_NET_RAW, got %v", err)
	}
	if after := rulesIn(t, ns); after != before {
		t.Errorf("a refused container changed the rules:\n%s", testnet.Diff(before, after))
	}

	lax := newEnv(t, nil, config.BackendIptables, "proxies: ['198.51.100.1:3128']\n")
	if _, err := lax.create(st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lax.hookLog(), "CAP_NET_RAW") {
		t.Errorf("the hook log must warn about CAP_NET_RAW:\n%s", lax.hookLog())
	}
	lax.poststop(c.id)
}

// With logging to the kernel and nf_log_all_netns=0, the hook says so.
func TestLogSysctlWarning(t *testing.T) {
	data, err := os.ReadFile("/proc/sys/net/netfilter/nf_log_all_netns")
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if strings.TrimSpace(string(data)) != "0" {
		t.Skip("skipping: nf_log_all_netns is 1 on this host (another test may have set it)")
	}
	e := newEnv(t, nil, config.BackendIptables, "proxies: ['198.51.100.1:3128']\n")
	c := startIn(t, testnet.NewNetns(t))
	if _, err := e.create(c.state()); err != nil {
		t.Fatal(err)
	}
	defer e.poststop(c.id)
	if !strings.Contains(e.hookLog(), "nf_log_all_netns") {
		t.Errorf("no warning about nf_log_all_netns in the hook log:\n%s", e.hookLog())
	}
}
