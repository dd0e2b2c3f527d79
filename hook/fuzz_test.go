package hook

import (
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

// FuzzParseState: whatever a runtime (or anyone) writes to stdin, the
// parser returns a state it has checked or an InputError, and never panics.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"bypass-hook.io/mode":"audit"}}`))
	f.Add([]byte(`{"id":"c1","status":"stopped"}`))
	f.Add([]byte(`{"id":"a\u0000b","pid":-1}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			if _, ok := err.(*InputError); !ok {
				t.Fatalf("error %v is %T, not an InputError", err, err)
			}
			return
		}
		if st.ID == "" || !idRe.MatchString(st.ID) || st.Pid < 0 {
			t.Fatalf("accepted a state that breaks the checks: %+v", st)
		}
		// The id is safe inside a quoted log prefix and an iptables-restore
		// line: no quote, space or line break can come from it.
		if p := LogPrefix("bypass", st.ID); strings.ContainsAny(strings.TrimSuffix(p, " "), " \t\n\r\"'\\") {
			t.Fatalf("log prefix %q from id %q", p, st.ID)
		}
	})
}

// FuzzConfigRules: any config the parser accepts yields, for any annotations,
// either an error or a rule set every rule of which renders.
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
		for _, fam := range Families {
			for _, r := range Rules(d.Policy, "0123456789abcdef", fam, AllFeatures) {
				if r.Log != nil && len(r.Log.Prefix) > config.MaxLogPrefix {
					t.Fatalf("log prefix %q passes %d characters", r.Log.Prefix, config.MaxLogPrefix)
				}
				if r.Dst.IsValid() && familyOf(r.Dst.Addr()) != fam {
					t.Fatalf("rule %s in the %s table", r, fam)
				}
				// Nothing from the config can break out of its line in an
				// iptables-restore batch.
				if line := ruleLines(fam, []Rule{r})[0]; strings.ContainsAny(line, "\n\r") {
					t.Fatalf("rule %s renders with a line break: %q", r, line)
				}
			}
		}
	})
}
