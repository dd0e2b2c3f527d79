// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// The firewall dumps: nftables (which also shows iptables-nft rules) and the
// legacy xtables, which nft cannot see.
var ruleDumps = [][]string{
	{"nft", "list", "ruleset"},
	{"iptables-legacy-save"},
	{"ip6tables-legacy-save"},
}

// What traffic and time change in a dump, and so must not count as a change.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`counter packets \d+ bytes \d+`), "counter"}, // nft
	{regexp.MustCompile(`\s*\[\d+:\d+\]`), ""},                       // iptables-save chain counters
	{regexp.MustCompile(` expires \S+`), ""},                         // nft set element timeouts
	{regexp.MustCompile(`used \d+ bytes`), "used"},                   // nft quota
}

// SnapshotHost returns the firewall of the machine's own network namespace,
// without comments or counters. It refuses to run on a thread that is not in
// the initial namespace (a thread a Do left, or a test process in a netns).
func SnapshotHost() (string, error) {
	// The dump tools fork from this thread and inherit its namespace: pin it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := netns.Get()
	if err != nil {
		return "", fmt.Errorf("testnet: reading this thread's netns: %w", err)
	}
	defer self.Close()
	initNS, err := hostNetns()
	if err != nil {
		return "", err
	}
	defer initNS.Close()
	if !self.Equal(initNS) {
		return "", fmt.Errorf("testnet: this thread is in netns %s, not the host's %s", self, initNS)
	}
	return dumpRules(nil)
}

// hostNetns opens the initial network namespace: pid 1's, or, where pid 1 is
// shielded (this VM's init), that of kthreadd, a kernel thread, which is
// always in it.
func hostNetns() (netns.NsHandle, error) {
	h, err := netns.GetFromPid(1)
	if err == nil {
		return h, nil
	}
	if comm, _ := os.ReadFile("/proc/2/comm"); strings.TrimSpace(string(comm)) == "kthreadd" {
		if h, err2 := netns.GetFromPid(2); err2 == nil {
			return h, nil
		}
	}
	return netns.None(), fmt.Errorf("testnet: finding the host's netns: pid 1's: %w (and pid 2 is no kthreadd to ask)", err)
}

// RulesIn returns the firewall of ns, in the form SnapshotHost uses, for
// before/after comparisons.
func RulesIn(ns *Netns) (string, error) {
	if ns == nil {
		return "", fmt.Errorf("testnet: RulesIn with a nil namespace")
	}
	return dumpRules([]string{"--net=" + ns.Path, "--"})
}

// dumpRules runs each dump, through nsenter when nsenter is given.
func dumpRules(nsenter []string) (string, error) {
	var b strings.Builder
	for _, d := range ruleDumps {
		fmt.Fprintf(&b, "== %s ==\n", strings.Join(d, " "))
		path, err := Tool(d[0])
		if err != nil {
			b.WriteString("(not installed)\n")
			continue
		}
		name, args := path, d[1:]
		if nsenter != nil {
			name, args = "nsenter", append(append(append([]string{}, nsenter...), path), d[1:]...)
		}
		out, err := run("", name, args...)
		if err != nil {
			return "", fmt.Errorf("testnet: dumping rules: %w", err)
		}
		b.WriteString(normalize(out))
	}
	return b.String(), nil
}

func normalize(dump string) string {
	var b strings.Builder
	for _, line := range strings.Split(dump, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		for _, v := range volatile {
			line = v.re.ReplaceAllString(line, v.with)
		}
		b.WriteString(strings.TrimRight(line, " \t") + "\n")
	}
	return b.String()
}

// GuardHost runs the tests between two snapshots of the host's firewall and
// fails the run (non-zero, with a diff on stderr) if they differ. Use it in
// TestMain: os.Exit(testnet.GuardHost(m)). Without root it only runs the tests.
func GuardHost(m *testing.M) int {
	before, err := SnapshotHost()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testnet: host firewall guard is off: %v\n", err)
		return m.Run()
	}
	code := m.Run()
	after, err := SnapshotHost()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testnet: HOST GUARD: cannot read the host's firewall after the tests: %v\n", err)
		return 1
	}
	if before != after {
		fmt.Fprintf(os.Stderr, "testnet: HOST GUARD: the machine's own firewall changed during the tests "+
			"(or another process on the machine changed it meanwhile):\n%s", Diff(before, after))
		return 1
	}
	return code
}

// Diff lists the lines only in a ("-") and only in b ("+"), in order; enough
// to see which rules came or went.
func Diff(a, b string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if cb[l] > 0 {
			cb[l]--
		} else {
			out.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if ca[l] > 0 {
			ca[l]--
		} else {
			out.WriteString("+ " + l + "\n")
		}
	}
	return out.String()
}

// HasFence tells whether a dump of RulesIn holds a bypass-hook fence of
// either backend: the iptables chain BYPASS-HOOK or the nftables table inet
// bypass_hook.
func HasFence(dump string) bool {
	return strings.Contains(dump, "BYPASS-HOOK") || strings.Contains(dump, "table inet bypass_hook")
}
