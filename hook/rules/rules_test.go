// SPDX-License-Identifier: Apache-2.0

package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testpolicy"
)

// names renders the rule set as "name action" lines, which is what the
// contract fixes: the order of the kinds of rule and what each does.
func names(rs []Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name+" "+string(r.Action))
	}
	return slices.Compact(out)
}

func TestRulesOrder(t *testing.T) {
	id := "0123456789abcdef0123"
	for _, tc := range []struct {
		name string
		cfg  string
		fam  Family
		caps Features
		want []string
	}{
		{"enforce v4", testpolicy.Base, IPv4, AllFeatures, []string{
			"log-source-route log", "refuse-source-route reject-admin-prohibited",
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
		{"enforce v6", testpolicy.Base, IPv6, AllFeatures, []string{
			"log-source-route log", "refuse-source-route reject-admin-prohibited",
			"loopback accept", "neighbour-discovery accept", "multicast-listener accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
		{"audit logs only", testpolicy.Base + "mode: audit", IPv4, AllFeatures, []string{
			"log-source-route log", "audit-source-route accept",
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "audit-tcp accept", "log-udp log", "audit-udp accept", "log-other log", "audit-other accept"}},
		{"other protocols accepted: ICMP only", testpolicy.Base + "otherProtocols: accept", IPv4, AllFeatures, []string{
			"log-source-route log", "refuse-source-route reject-admin-prohibited",
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"icmp accept", "log-other log", "refuse-other reject-admin-prohibited"}},
		{"no conntrack: new TCP only", testpolicy.Base, IPv4, Features{Log: true}, []string{
			"log-source-route log", "refuse-source-route reject-admin-prohibited",
			"loopback accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset"}},
		{"no log target", testpolicy.Base, IPv6, Features{Conntrack: true}, []string{
			"refuse-source-route reject-admin-prohibited",
			"loopback accept", "neighbour-discovery accept", "multicast-listener accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"refuse-tcp reject-tcp-reset", "refuse-udp reject-port-unreachable", "refuse-other reject-admin-prohibited"}},
		{"neither", "proxies: ['198.51.100.1:3128']", IPv4, Features{}, []string{
			"refuse-source-route reject-admin-prohibited", "loopback accept", "proxy accept", "refuse-tcp reject-tcp-reset"}},
		{"v6 without v6 proxies", "proxies: ['198.51.100.1:3128']", IPv6, AllFeatures, []string{
			"log-source-route log", "refuse-source-route reject-admin-prohibited",
			"loopback accept", "neighbour-discovery accept", "multicast-listener accept", "established accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := names(Rules(testpolicy.Policy(t, tc.cfg), id, tc.fam, tc.caps))
			if !slices.Equal(got, tc.want) {
				t.Errorf("rules:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestRulesNoConntrackMatchesSynOnly(t *testing.T) {
	for _, r := range Rules(testpolicy.Policy(t, testpolicy.Base), "c", IPv4, Features{Log: true}) {
		if r.Established {
			t.Errorf("conntrack used without conntrack: %s", r)
		}
		if r.Action != Accept && !r.TCPSyn && !r.SourceRouted {
			t.Errorf("without conntrack only new TCP may be logged or refused: %s", r)
		}
	}
}

// The rules that pass traffic come after the refusal of source routes, and
// the ones that accept without a destination are bound to the link.
func TestRulesDetailMatches(t *testing.T) {
	for _, fam := range Families {
		for _, cfg := range []string{testpolicy.Base, testpolicy.Base + "mode: audit", testpolicy.Base + "otherProtocols: accept"} {
			rs := Rules(testpolicy.Policy(t, cfg), "c", fam, AllFeatures)
			firstAccept := slices.IndexFunc(rs, func(r Rule) bool { return r.Action == Accept && !r.SourceRouted })
			lastSR := -1
			for i, r := range rs {
				if r.SourceRouted {
					lastSR = i
				}
			}
			if lastSR < 0 || lastSR > firstAccept {
				t.Errorf("%s %q: the source-route rules (last at %d) must come before the first accept (%d)", fam, cfg, lastSR, firstAccept)
			}
			for _, r := range rs {
				if r.Name == "neighbour-discovery" && r.HopLimit != 255 {
					t.Errorf("%s: neighbour discovery without hop limit 255: %s", fam, r)
				}
				if r.Name == "icmp" {
					want := map[Family]Proto{IPv4: ProtoICMP, IPv6: ProtoICMPv6}[fam]
					if r.Proto != want || r.Dst.IsValid() || r.Action != Accept {
						t.Errorf("%s: otherProtocols accept must accept %s and nothing else: %s", fam, want, r)
					}
				}
				if r.Action == Accept && r.Proto == ProtoAny && !r.Dst.IsValid() && r.OutIface == "" && !r.Established && r.UID == nil && !strings.HasPrefix(r.Name, "audit-") {
					t.Errorf("%s %q: a rule accepts any protocol to any destination: %s", fam, cfg, r)
				}
			}
		}
	}
}

func TestLogPrefix(t *testing.T) {
	for _, tc := range []struct{ stem, id, want string }{
		{"bypass", "0123456789abcdef", "bypass:0123456789ab: "},
		{"bypass", "short", "bypass:short: "},
		{"fourteen-chars", "0123456789abcdef", "fourteen-chars:0123456789ab: "},
	} {
		got := LogPrefix(tc.stem, tc.id)
		if got != tc.want {
			t.Errorf("LogPrefix(%q, %q) = %q, want %q", tc.stem, tc.id, got, tc.want)
		}
		if len(got) > config.MaxLogPrefix {
			t.Errorf("LogPrefix(%q, %q) is %d characters, more than the LOG target keeps", tc.stem, tc.id, len(got))
		}
	}
}

// A rule's text, which status shows, names every match it has, in one
// order, and quotes the log prefix.
func TestRuleString(t *testing.T) {
	icmp, uid := uint8(135), uint32(1337)
	for _, tc := range []struct {
		r    Rule
		want string
	}{
		{Rule{Name: "refuse-other", Action: RejectAdminProhibited}, "refuse-other: -> reject-admin-prohibited"},
		{Rule{Name: "log-source-route", SourceRouted: true, Action: Log, Log: &LogSpec{Target: config.LogKernel, Prefix: "bypass:abc: "}},
			`log-source-route: source-routed -> log kernel prefix="bypass:abc: "`},
		{Rule{Name: "loopback", OutIface: "lo", Action: Accept}, "loopback: out=lo -> accept"},
		{Rule{Name: "proxy", Proto: ProtoTCP, Dst: netip.MustParsePrefix("2001:db8:1::1/128"), DPort: 3128, Action: Accept},
			"proxy: proto=tcp dst=2001:db8:1::1/128 dport=3128 -> accept"},
		{Rule{Name: "neighbour-discovery", Proto: ProtoICMPv6, ICMPv6Type: &icmp, HopLimit: 255, Action: Accept},
			"neighbour-discovery: proto=ipv6-icmp icmpv6-type=135 hop-limit=255 -> accept"},
		{Rule{Name: "established", Established: true, Action: Accept}, "established: ct=established,related -> accept"},
		{Rule{Name: "x", Proto: ProtoTCP, TCPSyn: true, UID: &uid, Action: Log, Log: &LogSpec{Target: config.LogNflog, Prefix: "a\"b\t"}},
			`x: proto=tcp syn uid=1337 -> log nflog prefix="a\"b\t"`},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}
