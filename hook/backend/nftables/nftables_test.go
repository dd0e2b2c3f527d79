// SPDX-License-Identifier: Apache-2.0

package nftables

import (
	"net/netip"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/nfnl"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

func testNetns(t *testing.T) (netns.Handle, *testnet.Netns) {
	t.Helper()
	testnet.RequireRoot(t)
	ns := testnet.NewNetns(t)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	return netns.Handle{ID: id, Path: ns.Path}, ns
}

// The digest the create path takes from the kernel's echo of each rule is
// the one Inspect reads back later, for every rule set the model makes, on a
// fresh install and on a replacement: otherwise every fence would look
// changed to status, check, the monitor and the next container.
func TestEchoDigestIsInspectDigest(t *testing.T) {
	var sets []rules.RuleSet
	for _, y := range []string{
		"proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\ndns: [198.51.100.53]\nallowUids: [1337]\n",
		"proxies: ['198.51.100.1:3128']\nmode: audit\nlog: {target: nflog, group: 7, rate: 2/minute, burst: 4}\nallow: [{cidr: 198.51.100.0/25, ports: [53, 80], protocol: udp}]\n",
		"proxies: ['[2001:db8:1::1]:3128']\nlog: {target: kernel, prefix: x-y}\n",
	} {
		cfg, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		d, err := cfg.Decide(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, feat := range []rules.Features{rules.AllFeatures, {Conntrack: true}, {Log: true}, {}} {
			sets = append(sets, rules.NewRuleSet(d.Policy, "0123456789abcdef", feat))
		}
	}
	h, _ := testNetns(t)
	b := &Nftables{}
	for i, rs := range sets {
		// The first install is fresh; every later one replaces the table.
		if err := b.Install(h, rs); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		echoed, ok := b.InstalledDigests(h.Path)
		if !ok {
			t.Fatalf("set %d (%d rules): no echo", i, rs.Count())
		}
		seen, err := b.Inspect(h)
		if err != nil {
			t.Fatal(err)
		}
		if whole, why := seen.Whole(echoed); !whole {
			t.Errorf("set %d (%d rules): the echoed digests are not those read back: %s", i, rs.Count(), why)
		}
		if echoed[rules.IPv4] == echoed[rules.IPv6] && len(rs[rules.IPv4]) != len(rs[rules.IPv6]) {
			t.Errorf("set %d: one digest for both families", i)
		}
	}
}

// A rule set too large for its echoes to be sure to fit the socket's queue
// is installed without them and read back instead; its digest is the one
// Inspect reads.
func TestLargeRuleSetIsReadBack(t *testing.T) {
	var allow []rules.Rule
	for i := range nfnl.MaxEchoedRules + 100 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		allow = append(allow, rules.Rule{Name: "allow", Proto: rules.ProtoTCP, Dst: netip.PrefixFrom(a, 32), DPort: uint16(1000 + i), Action: rules.Accept})
	}
	rs := rules.RuleSet{rules.IPv4: allow}
	h, _ := testNetns(t)
	b := &Nftables{}
	if err := b.Install(h, rs); err != nil {
		t.Fatal(err)
	}
	if _, echoed := b.InstalledDigests(h.Path); echoed {
		t.Errorf("%d rules were echoed; want them read back", len(allow))
	}
	seen, err := b.Inspect(h)
	if err != nil {
		t.Fatal(err)
	}
	if !seen.Present || seen.Problem != "" || len(seen.Rules) != 2 {
		t.Errorf("read back right after the install: %+v", seen)
	}
}
