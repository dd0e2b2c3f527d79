package hook

import (
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

func policy(t *testing.T, y string) config.Policy {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	d, err := cfg.Decide(nil)
	if err != nil || !d.Fence {
		t.Fatalf("decide: %v %+v", err, d)
	}
	return d.Policy
}

const baseCfg = `
proxies: ['198.51.100.1:3128', '[2001:db8::1]:3128']
allow: [{cidr: 10.96.0.0/16, ports: [443, 8443], protocol: tcp}, {cidr: 2001:db8:9::/48}, {cidr: 10.1.0.0/16, ports: [7]}]
dns: [10.96.0.10, 2001:db8::53]
allowUids: [1337]
`

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
		{"enforce v4", baseCfg, IPv4, AllFeatures, []string{
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
		{"enforce v6", baseCfg, IPv6, AllFeatures, []string{
			"loopback accept", "neighbour-discovery accept", "multicast-listener accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable",
			"log-other log", "refuse-other reject-admin-prohibited"}},
		{"audit logs only", baseCfg + "mode: audit", IPv4, AllFeatures, []string{
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "audit-tcp accept", "log-udp log", "audit-udp accept", "log-other log", "audit-other accept"}},
		{"other protocols accepted", baseCfg + "otherProtocols: accept", IPv4, AllFeatures, []string{
			"loopback accept", "established accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset", "log-udp log", "refuse-udp reject-port-unreachable"}},
		{"no conntrack: new TCP only", baseCfg, IPv4, Features{Log: true}, []string{
			"loopback accept", "proxy accept", "allow accept", "dns accept", "allow-uid accept",
			"log-tcp log", "refuse-tcp reject-tcp-reset"}},
		{"no log target", baseCfg, IPv6, Features{Conntrack: true}, []string{
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
			got := names(Rules(policy(t, tc.cfg), id, tc.fam, tc.caps))
			if !slices.Equal(got, tc.want) {
				t.Errorf("rules:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestRulesDetail(t *testing.T) {
	p := policy(t, baseCfg)
	v4 := Rules(p, "0123456789abcdef0123", IPv4, AllFeatures)
	v6 := Rules(p, "0123456789abcdef0123", IPv6, AllFeatures)

	var got4, got6 []string
	for _, r := range v4 {
		got4 = append(got4, strings.Join(IptablesArgs(r, IPv4), " "))
	}
	for _, r := range v6 {
		got6 = append(got6, strings.Join(IptablesArgs(r, IPv6), " "))
	}
	want4 := []string{
		"-o lo -j RETURN",
		"-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
		"-d 198.51.100.1/32 -p tcp --dport 3128 -j RETURN",
		"-d 10.96.0.0/16 -p tcp --dport 443 -j RETURN",
		"-d 10.96.0.0/16 -p tcp --dport 8443 -j RETURN",
		"-d 10.1.0.0/16 -p tcp --dport 7 -j RETURN",
		"-d 10.1.0.0/16 -p udp --dport 7 -j RETURN",
		"-d 10.96.0.10/32 -p udp --dport 53 -j RETURN",
		"-d 10.96.0.10/32 -p tcp --dport 53 -j RETURN",
		"-m owner --uid-owner 1337 -j RETURN",
		"-p tcp -m limit --limit 5/second --limit-burst 10 -j LOG --log-prefix bypass:0123456789ab:  --log-uid",
		"-p tcp -j REJECT --reject-with tcp-reset",
		"-p udp -m limit --limit 5/second --limit-burst 10 -j LOG --log-prefix bypass:0123456789ab:  --log-uid",
		"-p udp -j REJECT --reject-with icmp-port-unreachable",
		"-m limit --limit 5/second --limit-burst 10 -j LOG --log-prefix bypass:0123456789ab:  --log-uid",
		"-j REJECT --reject-with icmp-admin-prohibited",
	}
	if !slices.Equal(got4, want4) {
		t.Errorf("ipv4:\n got  %q\n want %q", got4, want4)
	}
	for _, must := range []string{
		"-p ipv6-icmp -m icmp6 --icmpv6-type 133 -j RETURN",
		"-p ipv6-icmp -m icmp6 --icmpv6-type 137 -j RETURN",
		"-d 2001:db8::1/128 -p tcp --dport 3128 -j RETURN",
		"-d 2001:db8:9::/48 -j RETURN",
		"-d 2001:db8::53/128 -p udp --dport 53 -j RETURN",
		"-p udp -j REJECT --reject-with icmp6-port-unreachable",
		"-j REJECT --reject-with icmp6-adm-prohibited",
	} {
		if !slices.Contains(got6, must) {
			t.Errorf("ipv6 rules lack %q:\n%s", must, strings.Join(got6, "\n"))
		}
	}
	for _, r := range got6 {
		if strings.Contains(r, "198.51.100") || strings.Contains(r, "10.96") {
			t.Errorf("an IPv4 address in the IPv6 rules: %s", r)
		}
	}
}

func TestRulesNoConntrackMatchesSynOnly(t *testing.T) {
	for _, r := range Rules(policy(t, baseCfg), "c", IPv4, Features{Log: true}) {
		if r.Established {
			t.Errorf("conntrack used without conntrack: %s", r)
		}
		if r.Action != Accept && !r.TCPSyn {
			t.Errorf("without conntrack only new TCP may be logged or refused: %s", r)
		}
	}
}

func TestRulesNflog(t *testing.T) {
	p := policy(t, baseCfg+"log: {target: nflog, group: 99, prefix: bh, rate: 2/minute, burst: 4}")
	for _, r := range Rules(p, "deadbeefcafe00", IPv4, AllFeatures) {
		if r.Action != Log {
			continue
		}
		got := strings.Join(IptablesArgs(r, IPv4), " ")
		if !strings.HasSuffix(got, "-m limit --limit 2/minute --limit-burst 4 -j NFLOG --nflog-group 99 --nflog-prefix bh:deadbeefcafe: ") {
			t.Errorf("nflog rule: %s", got)
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

func TestInstallBatch(t *testing.T) {
	lines := ruleLines(IPv4, Rules(policy(t, "proxies: ['198.51.100.1:3128']"), "abc", IPv4, AllFeatures))
	fresh := installBatch(lines, false, false)
	if !strings.HasPrefix(fresh, "*filter\n-N BYPASS-HOOK\n") || !strings.HasSuffix(fresh, "-I OUTPUT 1 -j BYPASS-HOOK\nCOMMIT\n") {
		t.Errorf("fresh batch:\n%s", fresh)
	}
	if !strings.Contains(fresh, `--log-prefix "bypass:abc: " --log-uid`) {
		t.Errorf("the log prefix must be quoted, its trailing space kept:\n%s", fresh)
	}
	replace := installBatch(lines, true, true)
	if !strings.Contains(replace, "-F BYPASS-HOOK\n-D OUTPUT -j BYPASS-HOOK\n") {
		t.Errorf("replace batch:\n%s", replace)
	}
}
