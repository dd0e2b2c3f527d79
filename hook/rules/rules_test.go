package rules

import (
	"slices"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testpolicy"
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
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
		{"enforce v6", testpolicy.Base, IPv6, AllFeatures, []string{
			"loopback accept", "neighbour-discovery accept", "multicast-listener accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
		{"audit logs only", testpolicy.Base + "mode: audit", IPv4, AllFeatures, []string{
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "audit-tcp accept", "log-udp log", "audit-udp accept", "log-other log", "audit-other accept"}},
		{"other protocols accepted", testpolicy.Base + "otherProtocols: accept", IPv4, AllFeatures, []string{
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable"}},
		{"no conntrack: new TCP only", testpolicy.Base, IPv4, Features{Log: true}, []string{
			"loopback accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset"}},
		{"no log target", testpolicy.Base, IPv6, Features{Conntrack: true}, []string{
			"loopback accept", "neighbour-discovery accept", "multicast-listener accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"refuse-tcp reject-tcp-reset", "refuse-udp reject-port-unreachable", "refuse-other reject-admin-prohibited"}},
		{"neither", "proxies: ['198.51.100.1:3128']", IPv4, Features{}, []string{
			"loopback accept", "proxy accept", "refuse-tcp reject-tcp-reset"}},
		{"v6 without v6 proxies", "proxies: ['198.51.100.1:3128']", IPv6, AllFeatures, []string{
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
		if r.Action != Accept && !r.TCPSyn {
			t.Errorf("without conntrack only new TCP may be logged or refused: %s", r)
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
