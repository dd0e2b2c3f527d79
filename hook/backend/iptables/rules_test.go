// SPDX-License-Identifier: Apache-2.0

package iptables

import (
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testpolicy"
)

func TestRulesDetail(t *testing.T) {
	p := testpolicy.Policy(t, testpolicy.Base)
	v4 := rules.Rules(p, "0123456789abcdef0123", rules.IPv4, rules.AllFeatures)
	v6 := rules.Rules(p, "0123456789abcdef0123", rules.IPv6, rules.AllFeatures)

	var got4, got6 []string
	for _, r := range v4 {
		got4 = append(got4, strings.Join(Args(r, rules.IPv4), " "))
	}
	for _, r := range v6 {
		got6 = append(got6, strings.Join(Args(r, rules.IPv6), " "))
	}
	want4 := []string{
		"-m u32 --u32 0>>24&0xF=6:15 -m limit --limit 5/second --limit-burst 10 -j LOG --log-prefix bypass:0123456789ab:  --log-uid",
		"-m u32 --u32 0>>24&0xF=6:15 -j REJECT --reject-with icmp-admin-prohibited",
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
		"-m rt -j REJECT --reject-with icmp6-adm-prohibited",
		"-p ipv6-icmp -m icmp6 --icmpv6-type 133 -m hl --hl-eq 255 -j RETURN",
		"-p ipv6-icmp -m icmp6 --icmpv6-type 137 -m hl --hl-eq 255 -j RETURN",
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
	if got6[1] != "-m rt -j REJECT --reject-with icmp6-adm-prohibited" {
		t.Errorf("ipv6: the second rule is %q, want the refusal of routing headers before anything passes", got6[1])
	}
	for _, r := range got6 {
		if strings.Contains(r, "198.51.100") || strings.Contains(r, "10.96") {
			t.Errorf("an rules.IPv4 address in the rules.IPv6 rules: %s", r)
		}
	}
}

func TestRulesNflog(t *testing.T) {
	p := testpolicy.Policy(t, testpolicy.Base+"log: {target: nflog, group: 99, prefix: bh, rate: 2/minute, burst: 4}")
	for _, r := range rules.Rules(p, "deadbeefcafe00", rules.IPv4, rules.AllFeatures) {
		if r.Action != rules.Log {
			continue
		}
		got := strings.Join(Args(r, rules.IPv4), " ")
		if !strings.HasSuffix(got, "-m limit --limit 2/minute --limit-burst 4 -j NFLOG --nflog-group 99 --nflog-prefix bh:deadbeefcafe: ") {
			t.Errorf("nflog rule: %s", got)
		}
	}
}

func TestInstallBatch(t *testing.T) {
	lines := ruleLines(rules.IPv4, rules.Rules(testpolicy.Policy(t, "proxies: ['198.51.100.1:3128']"), "abc", rules.IPv4, rules.AllFeatures))
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
