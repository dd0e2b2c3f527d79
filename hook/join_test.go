// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// The join decision tells a policy that differs because the operator's
// config changed (the fence follows the newest config) from one that
// differs because of the joining container's own annotations (refused).
func TestDecideJoin(t *testing.T) {
	const (
		before  = "proxies: ['198.51.100.1:3128', '[2001:db8::1]:3128']\n"
		allow   = before + "allow: [{cidr: 10.96.0.10/32, ports: [53], protocol: udp}]\n"
		audit   = before + "mode: audit\n"
		oneMore = "proxies: ['198.51.100.1:3128', '198.51.100.2:3128', '[2001:db8::1]:3128']\n"
	)
	none := map[string]string{}
	subset := map[string]string{config.AnnProxies: "198.51.100.1:3128"}
	enforce := map[string]string{config.AnnMode: "enforce"}
	decide := func(t *testing.T, y string, ann map[string]string) config.Decision {
		t.Helper()
		cfg, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		d, err := cfg.Decide(ann)
		if err != nil || !d.Fence {
			t.Fatalf("config %q, annotations %v: %+v, %v", y, ann, d, err)
		}
		return d
	}
	for _, tc := range []struct {
		name                string
		firstCfg, joinCfg   string
		firstAnn, joinAnn   map[string]string
		others              bool
		recBackend, backend string
		oldRecord           bool // written before the narrowing was kept
		want                joinAction
	}{
		{"same policy", before, before, none, none, true, "nftables", "nftables", false, joinInPlace},
		{"allow added to the config", before, allow, none, none, true, "nftables", "nftables", false, followConfig},
		{"config now audit", before, audit, none, none, true, "nftables", "nftables", false, followConfig},
		{"proxy added to the config", before, oneMore, none, none, true, "nftables", "nftables", false, followConfig},
		{"config changed, both annotated alike", before, allow, subset, subset, true, "nftables", "nftables", false, followConfig},
		{"config now audit, both ask enforce: one policy", before, audit, enforce, enforce, true, "nftables", "nftables", false, joinInPlace},
		{"allow added, both ask enforce", before, allow, enforce, enforce, true, "nftables", "nftables", false, followConfig},
		{"annotations narrow the joiner", before, before, none, subset, true, "nftables", "nftables", false, refuseNarrowing},
		{"annotations differ, config changed too", before, allow, none, subset, true, "nftables", "nftables", false, refuseNarrowing},
		{"annotation says what the config says", before, before, none, enforce, true, "nftables", "nftables", false, joinInPlace},
		{"annotation kept enforce, config now audit", before, audit, enforce, none, true, "nftables", "nftables", false, refuseNarrowing},
		{"old record, allow added", before, allow, none, none, true, "nftables", "nftables", true, followConfig},
		{"old record, proxy added (cannot tell)", before, oneMore, none, none, true, "nftables", "nftables", true, refuseNarrowing},
		{"old record, annotations narrow", before, before, none, subset, true, "nftables", "nftables", true, refuseNarrowing},
		{"shared, config asks another backend", before, before, none, none, true, "iptables", "nftables", false, joinInPlace},
		{"shared, another backend and config changed", before, allow, none, none, true, "iptables", "nftables", false, followConfig},
		{"alone, another policy", before, allow, none, subset, false, "nftables", "nftables", false, installOver},
		{"alone, another backend", before, before, none, none, false, "iptables", "nftables", false, removeThenInstall},
		{"alone, same", before, before, none, none, false, "nftables", "nftables", false, joinInPlace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := decide(t, tc.firstCfg, tc.firstAnn)
			rec := &records.Record{Backend: tc.recBackend, Digest: first.Policy.Digest(), Policy: first.Policy, Narrowing: &first.Narrowing}
			if tc.oldRecord {
				rec.Narrowing = nil
			}
			join := decide(t, tc.joinCfg, tc.joinAnn)
			if got := decideJoin(rec, tc.others, tc.backend, join.Policy.Digest(), join); got != tc.want {
				t.Errorf("decideJoin = %v, want %v", got, tc.want)
			}
		})
	}
}
