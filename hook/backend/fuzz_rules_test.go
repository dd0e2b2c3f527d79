// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/iptables"
	"github.com/bypass-hook/bypass-hook/hook/backend/nftables"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// FuzzConfigRules: any config the parser accepts yields, for any annotations,
// either an error or a rule set every rule of which renders, for each
// backend: as iptables arguments none of which can break out of its line
// in an iptables-restore batch, and as nf_tables expressions the library
// can marshal.
func FuzzConfigRules(f *testing.F) {
	f.Add([]byte("proxies: ['198.51.100.1:3128']\nallow: [{cidr: 10.0.0.0/8, ports: [53]}]\n"), "true", "audit", "198.51.100.1:3128")
	f.Add([]byte("{\"proxies\": [\"[2001:db8::1]:3128\"], \"mode\": \"audit\"}"), "false", "enforce", "")
	f.Add([]byte("selection: annotated\nlog: {prefix: x}"), "", "", "[::1]:1")
	f.Fuzz(func(t *testing.T, data []byte, enabled, mode, proxies string) {
		cfg, err := config.Parse(data)
		if err != nil {
			return
		}
		ann := map[string]string{}
		for k, v := range map[string]string{config.AnnEnabled: enabled, config.AnnMode: mode, config.AnnProxies: proxies} {
			if v != "" {
				ann[k] = v
			}
		}
		d, err := cfg.Decide(ann)
		if err != nil || !d.Fence {
			return
		}
		for _, fam := range rules.Families {
			for _, r := range rules.Rules(d.Policy, "0123456789abcdef", fam, rules.AllFeatures) {
				if r.Log != nil && len(r.Log.Prefix) > config.MaxLogPrefix {
					t.Fatalf("log prefix %q passes %d characters", r.Log.Prefix, config.MaxLogPrefix)
				}
				if r.Dst.IsValid() && rules.FamilyOf(r.Dst.Addr()) != fam {
					t.Fatalf("rule %s in the %s table", r, fam)
				}
				for _, a := range iptables.Args(r, fam) {
					if strings.ContainsAny(a, "\n\r") {
						t.Fatalf("rule %s renders with a line break: %q", r, a)
					}
				}
				exprs, err := nftables.Exprs(r, fam)
				if err != nil {
					t.Fatalf("rule %s does not render as nf_tables expressions: %v", r, err)
				}
				for _, e := range exprs {
					if _, err := expr.Marshal(unix.NFPROTO_INET, e); err != nil {
						t.Fatalf("rule %s: expression %T does not marshal: %v", r, e, err)
					}
				}
			}
		}
	})
}
