// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	hookbackend "github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/backend/nftables"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// ---- rendering, no root ----

func nftRule(mod func(*rules.Rule)) rules.Rule {
	r := rules.Rule{Name: "t", Action: rules.Accept}
	mod(&r)
	return r
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func load(base expr.PayloadBase, offset, length uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: base, Offset: offset, Len: length}
}

func eq(b ...byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b} }

func and(m ...byte) *expr.Bitwise {
	return &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(m)), Mask: m, Xor: make([]byte, len(m))}
}

func cat(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch p := p.(type) {
		case []expr.Any:
			out = append(out, p...)
		case expr.Any:
			out = append(out, p)
		}
	}
	return out
}

// Each match and action of the rule model, rendered as the expressions nft
// itself would use.
func TestNftExprs(t *testing.T) {
	accept := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}
	v4, v6 := nfproto(unix.NFPROTO_IPV4), nfproto(unix.NFPROTO_IPV6)
	tcp, udp := l4proto(unix.IPPROTO_TCP), l4proto(unix.IPPROTO_UDP)
	kernelLog := &rules.LogSpec{Target: config.LogKernel, Prefix: "bypass:abc: ", RatePer: 5, RateUnit: "second", Burst: 10, LogUID: true}
	nflog := &rules.LogSpec{Target: config.LogNflog, Prefix: "bh:abc: ", Group: 7231, RatePer: 2, RateUnit: "minute", Burst: 4}
	limit := func(rate uint64, unit expr.LimitTime, burst uint32) *expr.Limit {
		return &expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: unit, Burst: burst}
	}
	for _, tc := range []struct {
		name string
		rule rules.Rule
		fam  rules.Family
		want []expr.Any
	}{
		{"loopback", nftRule(func(r *rules.Rule) { r.OutIface = "lo" }), rules.IPv4,
			cat(v4, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, eq('l', 'o', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), accept)},
		{"neighbour discovery", nftRule(func(r *rules.Rule) { r.Proto, r.ICMPv6Type, r.HopLimit = rules.ProtoICMPv6, ptr(uint8(135)), 255 }), rules.IPv6,
			cat(v6, l4proto(unix.IPPROTO_ICMPV6), load(expr.PayloadBaseTransportHeader, 0, 1), eq(135), load(expr.PayloadBaseNetworkHeader, 7, 1), eq(255), accept)},
		{"icmp", nftRule(func(r *rules.Rule) { r.Proto = rules.ProtoICMP }), rules.IPv4,
			cat(v4, l4proto(unix.IPPROTO_ICMP), accept)},
		// exthdr rt exists
		{"routing header", nftRule(func(r *rules.Rule) { r.SourceRouted, r.Action = true, rules.RejectAdminProhibited }), rules.IPv6,
			cat(v6, &expr.Exthdr{Op: expr.ExthdrOpIpv6, Type: 43, Len: 1, Flags: unix.NFT_EXTHDR_F_PRESENT, DestRegister: 1}, eq(1),
				&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 1})},
		// ip hdrlength != 5
		{"ip options", nftRule(func(r *rules.Rule) { r.SourceRouted, r.Action = true, rules.RejectAdminProhibited }), rules.IPv4,
			cat(v4, load(expr.PayloadBaseNetworkHeader, 0, 1), and(0x0f), &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{5}},
				&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 13})},
		{"established", nftRule(func(r *rules.Rule) { r.Established = true }), rules.IPv6,
			cat(v6, &expr.Ct{Register: 1, Key: expr.CtKeySTATE}, and(binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)...),
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}}, accept)},
		{"proxy v4", nftRule(func(r *rules.Rule) {
			r.Proto, r.Dst, r.DPort = rules.ProtoTCP, netip.MustParsePrefix("198.51.100.1/32"), 3128
		}), rules.IPv4,
			cat(v4, tcp, load(expr.PayloadBaseNetworkHeader, 16, 4), eq(198, 51, 100, 1), load(expr.PayloadBaseTransportHeader, 2, 2), eq(0x0c, 0x38), accept)},
		{"proxy v6", nftRule(func(r *rules.Rule) {
			r.Proto, r.Dst, r.DPort = rules.ProtoTCP, netip.MustParsePrefix("2001:db8:1::1/128"), 3128
		}), rules.IPv6,
			cat(v6, tcp, load(expr.PayloadBaseNetworkHeader, 24, 16), eq(0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
				load(expr.PayloadBaseTransportHeader, 2, 2), eq(0x0c, 0x38), accept)},
		{"allow a network, any protocol", nftRule(func(r *rules.Rule) { r.Dst = netip.MustParsePrefix("10.96.3.4/14") }), rules.IPv4,
			cat(v4, load(expr.PayloadBaseNetworkHeader, 16, 4), and(0xff, 0xfc, 0, 0), eq(10, 96, 0, 0), accept)},
		{"dns over udp", nftRule(func(r *rules.Rule) {
			r.Proto, r.Dst, r.DPort = rules.ProtoUDP, netip.MustParsePrefix("10.96.0.10/32"), 53
		}), rules.IPv4,
			cat(v4, udp, load(expr.PayloadBaseNetworkHeader, 16, 4), eq(10, 96, 0, 10), load(expr.PayloadBaseTransportHeader, 2, 2), eq(0, 53), accept)},
		{"allowed uid", nftRule(func(r *rules.Rule) { r.UID = ptr(uint32(1337)) }), rules.IPv4,
			cat(v4, &expr.Meta{Key: expr.MetaKeySKUID, Register: 1}, eq(binaryutil.NativeEndian.PutUint32(1337)...), accept)},
		{"kernel log", nftRule(func(r *rules.Rule) { r.Proto, r.Action, r.Log = rules.ProtoTCP, rules.Log, kernelLog }), rules.IPv4,
			cat(v4, tcp, limit(5, expr.LimitTimeSecond, 10), &expr.Counter{},
				&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_FLAGS, Flags: expr.LogFlagsUID, Data: []byte("bypass:abc: ")})},
		{"nflog", nftRule(func(r *rules.Rule) { r.Proto, r.Action, r.Log = rules.ProtoUDP, rules.Log, nflog }), rules.IPv6,
			cat(v6, udp, limit(2, expr.LimitTimeMinute, 4), &expr.Counter{},
				&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: 7231, Data: []byte("bh:abc: ")})},
		{"refuse tcp", nftRule(func(r *rules.Rule) { r.Proto, r.Action = rules.ProtoTCP, rules.RejectTCPReset }), rules.IPv6,
			cat(v6, tcp, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})},
		{"refuse new tcp without conntrack", nftRule(func(r *rules.Rule) { r.Proto, r.TCPSyn, r.Action = rules.ProtoTCP, true, rules.RejectTCPReset }), rules.IPv4,
			cat(v4, tcp, load(expr.PayloadBaseTransportHeader, 13, 1), and(0x17), eq(0x02), &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})},
		{"refuse udp v4", nftRule(func(r *rules.Rule) { r.Proto, r.Action = rules.ProtoUDP, rules.RejectPortUnreachable }), rules.IPv4,
			cat(v4, udp, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3})},
		{"refuse udp v6", nftRule(func(r *rules.Rule) { r.Proto, r.Action = rules.ProtoUDP, rules.RejectPortUnreachable }), rules.IPv6,
			cat(v6, udp, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 4})},
		{"refuse other v4", nftRule(func(r *rules.Rule) { r.Action = rules.RejectAdminProhibited }), rules.IPv4,
			cat(v4, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 13})},
		{"refuse other v6", nftRule(func(r *rules.Rule) { r.Action = rules.RejectAdminProhibited }), rules.IPv6,
			cat(v6, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nftables.Exprs(tc.rule, tc.fam)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %s:\n got %s\nwant %s", tc.fam, tc.rule, dumpExprs(got), dumpExprs(tc.want))
			}
		})
	}
}

func dumpExprs(es []expr.Any) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%T%+v", e, e))
	}
	return strings.Join(parts, " ")
}

// Rules the model should never make are refused, not rendered into
// something else.
func TestNftExprsRefuses(t *testing.T) {
	log := &rules.LogSpec{Target: config.LogKernel, Prefix: "p", RatePer: 5, RateUnit: "second", Burst: 10}
	for _, tc := range []struct {
		name string
		rule rules.Rule
		fam  rules.Family
	}{
		{"port without protocol", nftRule(func(r *rules.Rule) { r.DPort = 53 }), rules.IPv4},
		{"syn on udp", nftRule(func(r *rules.Rule) { r.Proto, r.TCPSyn = rules.ProtoUDP, true }), rules.IPv4},
		{"unknown protocol", nftRule(func(r *rules.Rule) { r.Proto = "sctp" }), rules.IPv4},
		{"v6 address in v4", nftRule(func(r *rules.Rule) { r.Dst = netip.MustParsePrefix("2001:db8::1/128") }), rules.IPv4},
		{"icmpv6 type on tcp", nftRule(func(r *rules.Rule) { r.Proto, r.ICMPv6Type = rules.ProtoTCP, ptr(uint8(135)) }), rules.IPv6},
		{"long interface", nftRule(func(r *rules.Rule) { r.OutIface = "an-interface-name" }), rules.IPv4},
		{"log without spec", nftRule(func(r *rules.Rule) { r.Action = rules.Log }), rules.IPv4},
		{"log per week", nftRule(func(r *rules.Rule) { l := *log; l.RateUnit = "week"; r.Action, r.Log = rules.Log, &l }), rules.IPv4},
		{"unknown log target", nftRule(func(r *rules.Rule) { l := *log; l.Target = "ulog"; r.Action, r.Log = rules.Log, &l }), rules.IPv4},
		{"reset on udp", nftRule(func(r *rules.Rule) { r.Proto, r.Action = rules.ProtoUDP, rules.RejectTCPReset }), rules.IPv4},
		{"unknown action", nftRule(func(r *rules.Rule) { r.Action = "drop" }), rules.IPv4},
	} {
		if got, err := nftables.Exprs(tc.rule, tc.fam); err == nil {
			t.Errorf("%s: %s rendered as %s; want an error", tc.name, tc.rule, dumpExprs(got))
		}
	}
}

// Every rule Rules makes, under every kind of policy, renders: its family
// first, one counter, and the action the model says.
func TestNftExprsCoverRules(t *testing.T) {
	base := "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\nallow: [{cidr: 10.0.0.0/8, ports: [443]}, {cidr: '2001:db8:9::/48'}]\ndns: [10.96.0.10, '2001:db8::53']\nallowUids: [1337]\n"
	for _, extra := range []string{"", "mode: audit\n", "otherProtocols: accept\n", "log: {target: nflog, group: 9}\n"} {
		cfg, err := config.Parse([]byte(base + extra))
		if err != nil {
			t.Fatal(err)
		}
		d, err := cfg.Decide(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, caps := range []rules.Features{rules.AllFeatures, {Conntrack: true}, {Log: true}, {}} {
			for _, fam := range rules.Families {
				for _, r := range rules.Rules(d.Policy, "0123456789abcdef", fam, caps) {
					es, err := nftables.Exprs(r, fam)
					if err != nil {
						t.Errorf("%q %+v %s: %s: %v", extra, caps, fam, r, err)
						continue
					}
					checkShape(t, r, fam, es)
				}
			}
		}
	}
}

func checkShape(t *testing.T, r rules.Rule, fam rules.Family, es []expr.Any) {
	t.Helper()
	want := byte(unix.NFPROTO_IPV4)
	if fam == rules.IPv6 {
		want = unix.NFPROTO_IPV6
	}
	if m, ok := es[0].(*expr.Meta); !ok || m.Key != expr.MetaKeyNFPROTO || es[1].(*expr.Cmp).Data[0] != want {
		t.Errorf("%s %s does not start by matching its family: %s", fam, r, dumpExprs(es))
	}
	counters := 0
	for _, e := range es {
		if _, ok := e.(*expr.Counter); ok {
			counters++
		}
	}
	if counters != 1 {
		t.Errorf("%s %s has %d counters: %s", fam, r, counters, dumpExprs(es))
	}
	last := es[len(es)-1]
	var ok bool
	switch r.Action {
	case rules.Accept:
		v, isV := last.(*expr.Verdict)
		ok = isV && v.Kind == expr.VerdictAccept
	case rules.Log:
		_, ok = last.(*expr.Log)
	default:
		_, ok = last.(*expr.Reject)
	}
	if !ok {
		t.Errorf("%s %s ends in %T, not its action", fam, r, last)
	}
}

// ---- in a namespace, as root ----

const nftTestPolicy = "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\nallow: [{cidr: 10.0.0.0/8, ports: [443], protocol: tcp}]\ndns: [198.51.100.53]\nallowUids: [1337]\n"

func nftRuleSet(t *testing.T, yaml, id string, caps rules.Features) rules.RuleSet {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	d, err := cfg.Decide(nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := rules.NewRuleSet(d.Policy, id, caps)
	return rs
}

var nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// nftList is our table as nft prints it, counters blanked; "" when absent.
func nftList(t *testing.T, ns *testnet.Netns) string {
	t.Helper()
	testnet.RequireTools(t, "nft")
	out, err := ns.Command(t.Context(), "nft", "list", "table", "inet", nftables.Table).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return ""
		}
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return nftCounters.ReplaceAllString(string(out), "counter")
}

// The table as nft, which decodes the kernel's bytecode independently of
// the library, reads it: the contract's rules, in order, for both families.
func TestNftablesListing(t *testing.T) {
	ns := testnet.NewNetns(t)
	b, err := hookbackend.New(config.BackendNftables)
	if err != nil {
		t.Fatal(err)
	}
	target := nsOf(t, ns)
	if err := b.Install(target, nftRuleSet(t, nftTestPolicy, "0123456789abcdef", rules.AllFeatures)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Remove(target) })
	want := `table inet bypass_hook {
	chain output {
		type filter hook output priority filter - 1; policy accept;
		ip hdrlength != 5 limit rate 5/second burst 10 packets counter log prefix "bypass:0123456789ab: " flags skuid comment "ipv4 log-source-route"
		ip hdrlength != 5 counter reject with icmp admin-prohibited comment "ipv4 refuse-source-route"
		meta nfproto ipv4 oifname "lo" counter accept comment "ipv4 loopback"
		meta nfproto ipv4 ct state established,related counter accept comment "ipv4 established"
		ip daddr 198.51.100.1 tcp dport 3128 counter accept comment "ipv4 proxy"
		ip daddr 10.0.0.0/8 tcp dport 443 counter accept comment "ipv4 allow"
		ip daddr 198.51.100.53 udp dport 53 counter accept comment "ipv4 dns"
		ip daddr 198.51.100.53 tcp dport 53 counter accept comment "ipv4 dns"
		meta nfproto ipv4 meta skuid 1337 counter accept comment "ipv4 allow-uid"
		meta nfproto ipv4 meta l4proto tcp limit rate 5/second burst 10 packets counter log prefix "bypass:0123456789ab: " flags skuid comment "ipv4 log-tcp"
		meta nfproto ipv4 meta l4proto tcp counter reject with tcp reset comment "ipv4 refuse-tcp"
		meta nfproto ipv4 meta l4proto udp limit rate 5/second burst 10 packets counter log prefix "bypass:0123456789ab: " flags skuid comment "ipv4 log-udp"
		meta nfproto ipv4 meta l4proto udp counter reject with icmp port-unreachable comment "ipv4 refuse-udp"
		meta nfproto ipv4 limit rate 5/second burst 10 packets counter log prefix "bypass:0123456789ab: " flags skuid comment "ipv4 log-other"
		meta nfproto ipv4 counter reject with icmp admin-prohibited comment "ipv4 refuse-other"
		exthdr rt exists limit rate 5/second burst 10 packets counter log prefix "bypass:0123456789ab: " flags skuid comment "ipv6 log-source-route"
		exthdr rt exists counter reject with icmpv6 admin-prohibited comment "ipv6 refuse-source-route"
		meta nfproto ipv6 oifname "lo" counter accept comment "ipv6 loopback"
		icmpv6 type nd-router-solicit ip6 hoplimit 255 counter accept comment "ipv6 neighbour-discovery"
		icmpv6 type nd-router-advert ip6 hoplimit 255 counter accept comment "ipv6 neighbour-discovery"
		icmpv6 type nd-neighbor-solicit ip6 hoplimit 255 counter accept comment "ipv6 neighbour-discovery"
		icmpv6 type nd-neighbor-advert ip6 hoplimit 255 counter accept comment "ipv6 neighbour-discovery"
		icmpv6 type nd-redirect ip6 hoplimit 255 counter accept comment "ipv6 neighbour-discovery"
`
	got := nftList(t, ns)
	// The rest of IPv6 mirrors IPv4; the head pins the shape, the tail the
	// IPv6 rejects.
	if !strings.HasPrefix(got, want) {
		t.Errorf("nft list table:\n%s\nwant it to start with:\n%s", got, want)
	}
	for _, line := range []string{
		`icmpv6 type mld-listener-report ip6 daddr ff02::/16 counter accept comment "ipv6 multicast-listener"`,
		`icmpv6 type mld-listener-done ip6 daddr ff02::/16 counter accept comment "ipv6 multicast-listener"`,
		`icmpv6 type mld2-listener-report ip6 daddr ff02::/16 counter accept comment "ipv6 multicast-listener"`,
		`ip6 daddr 2001:db8:1::1 tcp dport 3128 counter accept comment "ipv6 proxy"`,
		`meta nfproto ipv6 meta l4proto tcp counter reject with tcp reset comment "ipv6 refuse-tcp"`,
		`meta nfproto ipv6 meta l4proto udp counter reject with icmpv6 port-unreachable comment "ipv6 refuse-udp"`,
		`meta nfproto ipv6 counter reject with icmpv6 admin-prohibited comment "ipv6 refuse-other"`,
	} {
		if !strings.Contains(got, line) {
			t.Errorf("no line %q in:\n%s", line, got)
		}
	}
	if n, rules := strings.Count(got, " comment "), nftRuleSet(t, nftTestPolicy, "x", rules.AllFeatures).Count(); n != rules {
		t.Errorf("%d rules listed:\n%s", n, got)
	}
}

// NFLOG, no conntrack (new TCP only, as SYNs), and audit mode (log only) as
// nft reads them.
func TestNftablesListingVariants(t *testing.T) {
	ns := testnet.NewNetns(t)
	b, _ := hookbackend.New(config.BackendNftables)
	target := nsOf(t, ns)
	t.Cleanup(func() { b.Remove(target) })
	for _, tc := range []struct {
		name, yaml string
		caps       rules.Features
		want, not  []string
	}{
		{"nflog", nftTestPolicy + "log: {target: nflog, group: 7231, prefix: bh}\n", rules.AllFeatures,
			[]string{`meta nfproto ipv6 meta l4proto udp limit rate 5/second burst 10 packets counter log prefix "bh:0123456789ab: " group 7231 comment "ipv6 log-udp"`},
			[]string{"flags skuid"}},
		{"no conntrack", nftTestPolicy, rules.Features{Log: true},
			[]string{`meta nfproto ipv4 tcp flags syn / fin,syn,rst,ack counter reject with tcp reset comment "ipv4 refuse-tcp"`},
			[]string{"ct state", "refuse-udp", "refuse-other"}},
		{"no log", nftTestPolicy, rules.Features{Conntrack: true},
			[]string{`comment "ipv6 refuse-other"`},
			[]string{" log ", " limit "}},
		{"audit", nftTestPolicy + "mode: audit\n", rules.AllFeatures,
			[]string{`comment "ipv4 log-other"`},
			[]string{"reject"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.Install(target, nftRuleSet(t, tc.yaml, "0123456789abcdef", tc.caps)); err != nil {
				t.Fatal(err)
			}
			got := nftList(t, ns)
			for _, s := range tc.want {
				if !strings.Contains(got, s) {
					t.Errorf("no %q in:\n%s", s, got)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(got, s) {
					t.Errorf("%q should not be in:\n%s", s, got)
				}
			}
		})
	}
}

// Install, install again (the same as once), counters, Remove, and Remove
// of what is gone already.
func TestNftablesLifecycle(t *testing.T) {
	ns := testnet.NewNetns(t)
	b, _ := hookbackend.New(config.BackendNftables)
	target := nsOf(t, ns)
	rs := nftRuleSet(t, nftTestPolicy, "0123456789abcdef", rules.AllFeatures)
	t.Cleanup(func() { b.Remove(target) })

	if ok, err := installed(b, target); err != nil || ok {
		t.Fatalf("Installed in an empty namespace = %v, %v", ok, err)
	}
	if err := b.Install(target, rs); err != nil {
		t.Fatal(err)
	}
	once := nftList(t, ns)
	if err := b.Install(target, rs); err != nil {
		t.Fatalf("installing twice: %v", err)
	}
	if twice := nftList(t, ns); twice != once {
		t.Errorf("installing twice differs from once:\n%s", testnet.Diff(once, twice))
	}
	if ok, err := installed(b, target); err != nil || !ok {
		t.Fatalf("Installed after Install = %v, %v", ok, err)
	}
	counters, err := b.Counters(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range rules.Families {
		if len(counters[fam]) != len(rs[fam]) {
			t.Errorf("%s: %d counters for %d rules", fam, len(counters[fam]), len(rs[fam]))
		}
	}
	// Another policy replaces the fence whole.
	other := nftRuleSet(t, "proxies: ['198.51.100.2:8080']\n", "fedcba9876543210", rules.AllFeatures)
	if err := b.Install(target, other); err != nil {
		t.Fatal(err)
	}
	if got := nftList(t, ns); strings.Contains(got, "3128") || !strings.Contains(got, "dport 8080") || !strings.Contains(got, "fedcba987654") {
		t.Errorf("after replacing the policy:\n%s", got)
	}
	if err := b.Remove(target); err != nil {
		t.Fatal(err)
	}
	if got := nftList(t, ns); got != "" {
		t.Errorf("after Remove:\n%s", got)
	}
	if ok, err := installed(b, target); err != nil || ok {
		t.Errorf("Installed after Remove = %v, %v", ok, err)
	}
	if err := b.Remove(target); err != nil {
		t.Errorf("Remove of a fence already gone: %v", err)
	}
	if _, err := b.Counters(target); err == nil {
		t.Error("Counters without a fence must be an error")
	}
}

// A rule the kernel refuses, near the end of the set, fails the whole
// transaction: an empty namespace stays empty, a fenced one keeps its fence.
// A 200-byte log prefix passes our rendering and the kernel refuses it (127
// at most). TestRollback covers a bad rule in the middle of each family.
func TestNftablesPartWayFailure(t *testing.T) {
	for _, backend := range []string{config.BackendNftables} {
		t.Run(backend, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			b, err := hookbackend.New(backend)
			if err != nil {
				t.Fatal(err)
			}
			target := nsOf(t, ns)
			t.Cleanup(func() { b.Remove(target) })
			good := nftRuleSet(t, nftTestPolicy, "0123456789abcdef", rules.AllFeatures)
			bad := nftRuleSet(t, nftTestPolicy, "0123456789abcdef", rules.AllFeatures)
			v6 := bad[rules.IPv6]
			last := v6[len(v6)-2] // log-other, before refuse-other
			if last.Action != rules.Log {
				t.Fatalf("rule %s is not a log rule", last)
			}
			l := *last.Log
			l.Prefix = strings.Repeat("x", 200)
			v6[len(v6)-2].Log = &l

			for _, state := range []string{"empty", "fenced"} {
				if state == "fenced" {
					if err := b.Install(target, good); err != nil {
						t.Fatal(err)
					}
				}
				before := rulesIn(t, ns)
				err := b.Install(target, bad)
				if err == nil {
					t.Fatalf("%s namespace: Install with a 200-byte log prefix succeeded", state)
				}
				t.Logf("%s namespace: %v", state, err)
				if after := rulesIn(t, ns); after != before {
					t.Errorf("%s namespace: the failed install left changes:\n%s", state, testnet.Diff(before, after))
				}
			}
		})
	}
}

// The fence counts what it refuses and what it lets through, per rule, in
// the order of the rules, for each backend.
func TestCountersCount(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			d, _ := e.cfg.Decide(nil)
			rs := rules.NewRuleSet(d.Policy, "counters-test", rules.AllFeatures)
			b, _ := hookbackend.New(backend)
			target := nsOf(t, client.Netns)
			if err := b.Install(target, rs); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Remove(target) })
			_, err := testnet.DialTCP(client.Netns, lab.TCPV4, probeTimeout)
			expectRefused(t, "direct TCP over IPv4", 0, err)
			_, _, err = testnet.HTTPConnect(client.Netns, lab.ProxyV6, lab.URLV4, probeTimeout)
			expectOK(t, "CONNECT through the IPv6 proxy", 0, err)

			counters, err := b.Counters(target)
			if err != nil {
				t.Fatal(err)
			}
			count := func(fam rules.Family, name string) uint64 {
				var n uint64
				for i, r := range rs[fam] {
					if r.Name == name && i < len(counters[fam]) {
						n += counters[fam][i]
					}
				}
				return n
			}
			for _, c := range []struct {
				fam  rules.Family
				name string
			}{{rules.IPv4, "refuse-tcp"}, {rules.IPv4, "log-tcp"}, {rules.IPv6, "proxy"}} {
				if count(c.fam, c.name) == 0 {
					t.Errorf("%s %s counted nothing; counters %v", c.fam, c.name, counters)
				}
			}
			if n := count(rules.IPv4, "proxy"); n != 0 {
				t.Errorf("ipv4 proxy counted %d packets; nothing went to it", n)
			}
		})
	}
}

// A kernel LOG line from the nftables fence names the container and the uid.
func TestNftablesKernelLog(t *testing.T) {
	lab := testnet.NewLab(t)
	testnet.KernelNetnsLog(t)
	kmsg := testnet.OpenKmsg(t)
	client := lab.AddClient(t)
	e := newEnv(t, lab, config.BackendNftables, "log: {prefix: bhnft}\n")
	c := startIn(t, client.Netns)
	if _, err := e.create(c.state()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.poststop(c.id) })
	_, err := testnet.DialTCP(client.Netns, lab.TCPV6, probeTimeout)
	expectRefused(t, "direct TCP over IPv6", 0, err)
	line, err := kmsg.Wait(5*time.Second, "bhnft:"+rules.ShortID(c.id)+": ", "DPT="+fmt.Sprint(testnet.TCPPort), "UID=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel log: %s", line)
}

// A namespace fenced by one backend keeps it when the config asks for the
// other: a container that starts in it afterwards (a restart in a running
// pod) joins, since a config change must never fail it, and the rules stay
// as they are; poststop removes with the backend the record names, whatever
// the config now says.
func TestBackendConflict(t *testing.T) {
	for _, first := range []string{config.BackendNftables, config.BackendIptables} {
		second := config.BackendIptables
		if first == second {
			second = config.BackendNftables
		}
		t.Run(first+"-then-"+second, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			e := newEnv(t, nil, first, "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\n")
			c1, c2 := startIn(t, ns), startIn(t, ns)
			empty := rulesIn(t, ns)
			if _, err := e.create(c1.state()); err != nil {
				t.Fatal(err)
			}
			fenced := rulesIn(t, ns)

			other := *e.cfg
			other.Backend = second
			h2 := hook.New(&other, e.log)
			res, err := h2.Create(c2.state())
			if err != nil || res.Backend != first || !strings.Contains(res.Action, c1.id) {
				t.Fatalf("second container under a config asking for %s: %+v, %v; want it to join the %s fence", second, res, err, first)
			}
			if now := rulesIn(t, ns); now != fenced {
				t.Errorf("joining changed the rules:\n%s", testnet.Diff(fenced, now))
			}
			if recs := e.records(); len(recs) != 1 || len(recs[0].Owners) != 2 || recs[0].Backend != first {
				t.Errorf("records after the join: %+v", recs)
			}

			// The operator switched the config; the fence still goes.
			for _, c := range []*container{c1, c2} {
				if _, err := h2.Poststop(&specs.State{ID: c.id, Status: specs.StateStopped, Bundle: testBundle}); err != nil {
					t.Fatalf("poststop under a config naming %s: %v", second, err)
				}
			}
			if now := rulesIn(t, ns); now != empty {
				t.Errorf("poststop left rules of the %s backend:\n%s", first, testnet.Diff(empty, now))
			}
		})
	}
}

// Both backends give the same verdicts for the same probes.
func TestBackendsAgree(t *testing.T) {
	lab := testnet.NewLab(t)
	type verdict string
	const (
		ok      verdict = "ok"
		refused verdict = "refused"
	)
	classify := func(el time.Duration, err error) verdict {
		switch {
		case err == nil:
			return ok
		case errors.Is(err, syscall.ECONNREFUSED) && el < time.Second:
			return refused
		case testnet.IsTimeout(err):
			return verdict("timeout after " + el.String())
		}
		return verdict(err.Error())
	}
	probes := []struct {
		name string
		want verdict
		run  func(c *testnet.Client) verdict
	}{
		{"GET via the IPv4 proxy", ok, func(c *testnet.Client) verdict {
			_, el, err := testnet.HTTPViaProxy(c.Netns, lab.ProxyV4, lab.URLV4, probeTimeout)
			return classify(el, err)
		}},
		{"CONNECT via the IPv6 proxy", ok, func(c *testnet.Client) verdict {
			_, el, err := testnet.HTTPConnect(c.Netns, lab.ProxyV6, lab.URLV6, probeTimeout)
			return classify(el, err)
		}},
		{"direct TCP v4", refused, func(c *testnet.Client) verdict { return classify(testnet.DialTCP(c.Netns, lab.TCPV4, probeTimeout)) }},
		{"direct TCP v6", refused, func(c *testnet.Client) verdict { return classify(testnet.DialTCP(c.Netns, lab.TCPV6, probeTimeout)) }},
		{"proxy host, other port", refused, func(c *testnet.Client) verdict {
			return classify(testnet.DialTCP(c.Netns, net.JoinHostPort(lab.ServerV6.String(), fmt.Sprint(testnet.HTTPPort)), probeTimeout))
		}},
		{"UDP v4", refused, func(c *testnet.Client) verdict {
			return classify(testnet.UDPExchange(c.Netns, lab.UDPV4, probeTimeout))
		}},
		{"UDP v6", refused, func(c *testnet.Client) verdict {
			return classify(testnet.UDPExchange(c.Netns, lab.UDPV6, probeTimeout))
		}},
		{"loopback", ok, func(c *testnet.Client) verdict { return classify(testnet.Loopback(c.Netns, probeTimeout)) }},
		{"TCP v6 as allowed uid 1337", ok, func(c *testnet.Client) verdict {
			r := testnet.RunProbeAs(c.Netns, 1337, testnet.Probe{Kind: testnet.ProbeTCP, Addr: lab.TCPV6, Timeout: probeTimeout})
			return classify(r.Elapsed, r.Err)
		}},
		{"TCP v4 as uid 1000", refused, func(c *testnet.Client) verdict {
			r := testnet.RunProbeAs(c.Netns, 1000, testnet.Probe{Kind: testnet.ProbeTCP, Addr: lab.TCPV4, Timeout: probeTimeout})
			return classify(r.Elapsed, r.Err)
		}},
	}
	got := map[string]map[string]verdict{}
	for _, backend := range backends(t) {
		client := lab.AddClient(t)
		e := newEnv(t, lab, backend, "allowUids: [1337]\n")
		c := startIn(t, client.Netns)
		if _, err := e.create(c.state()); err != nil {
			t.Fatalf("%s: create: %v", backend, err)
		}
		t.Cleanup(func() { e.poststop(c.id) })
		got[backend] = map[string]verdict{}
		for _, p := range probes {
			got[backend][p.name] = p.run(client)
		}
	}
	for _, p := range probes {
		for _, backend := range backends(t) {
			if v := got[backend][p.name]; v != p.want {
				t.Errorf("%s, %s: %s; want %s", p.name, backend, v, p.want)
			}
		}
	}
	t.Logf("verdicts: %v", got)
}

func ptr[T any](v T) *T { return &v }
