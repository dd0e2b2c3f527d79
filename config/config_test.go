// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	cfg, err := Parse([]byte(`
proxies: [198.51.100.1:3128, "[2001:db8::1]:3128"]
allow:
  - cidr: 10.96.0.10/32
    ports: [53]
    protocol: udp
  - cidr: 2001:db8:5::/48
dns: [10.96.0.10]
allowUids: [1337]
mode: audit
selection: annotated
failure: open
otherProtocols: accept
strict: true
backend: nftables
log: {target: nflog, group: 12, prefix: bh, rate: 20/minute, burst: 3, required: true}
hookLog: /var/log/x.log
stateDir: /run/x
nri: {excludeNamespaces: [kube-system, infra]}
trustAnnotations: true
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3128"), netip.MustParseAddrPort("[2001:db8::1]:3128")}
	if got := cfg.ProxyAddrs(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("proxies = %v, want %v", got, want)
	}
	if cfg.allow[0].Protocol != "udp" || cfg.allow[0].Ports[0] != 53 || cfg.allow[1].Protocol != "any" {
		t.Errorf("allow = %+v", cfg.allow)
	}
	if cfg.Mode != ModeAudit || cfg.Log.Group != 12 || !cfg.TrustAnnotations || cfg.NRI.ExcludeNamespaces[1] != "infra" {
		t.Errorf("cfg = %+v", cfg)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != ModeEnforce || cfg.Selection != SelectAll || cfg.Failure != FailClosed ||
		cfg.Backend != BackendAuto || cfg.Log.Target != LogKernel || cfg.Log.Prefix != "bypass" ||
		cfg.StateDir != "/run/bypass-hook" || len(cfg.Proxies) != 0 {
		t.Errorf("defaults = %+v", cfg)
	}
}

// Each bad input is an error that names the key and the value.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		wantKey    string
		wantValue  string
	}{
		{"unknown key", "proxie: [198.51.100.1:3128]", "proxie", ""},
		{"unknown nested key", "log: {prefixx: a}", "prefixx", ""},
		{"malformed proxy", "proxies: [198.51.100.300:3128]", "proxies[0]", "198.51.100.300:3128"},
		{"proxy without port", "proxies: [198.51.100.1]", "proxies[0]", "198.51.100.1"},
		{"proxy ipv6 without brackets", "proxies: ['2001:db8::1:3128']", "proxies[0]", "2001:db8::1:3128"},
		{"proxy port out of range", "proxies: ['198.51.100.1:70000']", "proxies[0]", "198.51.100.1:70000"},
		{"proxy port zero", "proxies: ['198.51.100.1:0']", "proxies[0]", "198.51.100.1:0"},
		{"proxy hostname", "proxies: ['proxy.example:3128']", "proxies[0]", "proxy.example:3128"},
		{"allow port out of range", "allow: [{cidr: 10.0.0.0/8, ports: [65536]}]", "allow[0].ports", "65536"},
		{"allow port zero", "allow: [{cidr: 10.0.0.0/8, ports: [0]}]", "allow[0].ports", "0"},
		{"allow bad cidr", "allow: [{cidr: 10.0.0.0/33}]", "allow[0].cidr", "10.0.0.0/33"},
		{"allow host bits", "allow: [{cidr: 10.0.0.1/8}]", "allow[0].cidr", "10.0.0.1/8"},
		{"allow bad protocol", "allow: [{cidr: 10.0.0.0/8, protocol: sctp}]", "allow[0].protocol", "sctp"},
		{"bad dns", "dns: [resolver.local]", "dns[0]", "resolver.local"},
		{"bad uid", "allowUids: [-1]", "allowUids[0]", "-1"},
		{"uid too large", "allowUids: [4294967295]", "allowUids[0]", "4294967295"},
		{"bad mode", "mode: monitor", "mode", "monitor"},
		{"bad selection", "selection: some", "selection", "some"},
		{"bad failure", "failure: maybe", "failure", "maybe"},
		{"bad otherProtocols", "otherProtocols: drop", "otherProtocols", "drop"},
		{"bad backend", "backend: ebpf", "backend", "ebpf"},
		{"bad log target", "log: {target: syslog}", "log.target", "syslog"},
		{"prefix too long", "log: {prefix: fifteen-chars-x}", "log.prefix", "fifteen-chars-x"},
		{"prefix with space", "log: {prefix: 'a b'}", "log.prefix", "a b"},
		{"prefix with quote", `log: {prefix: 'a"b'}`, "log.prefix", `a\"b`},
		{"bad rate", "log: {rate: fast}", "log.rate", "fast"},
		{"rate too fast", "log: {rate: 20000/second}", "log.rate", "20000/second"},
		{"rate too fast per minute", "log: {rate: 600001/minute}", "log.rate", "600001/minute"},
		{"zero burst", "log: {burst: 0}", "log.burst", "0"},
		{"group out of range", "log: {group: 70000}", "log.group", "70000"},
		{"relative stateDir", "stateDir: run/x", "stateDir", "run/x"},
		{"relative hookLog", "hookLog: x.log", "hookLog", "x.log"},
		{"two documents", "mode: audit\n---\nmode: enforce\n", "", ""},
		{"not yaml", "proxies: [", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error for %q", tc.yaml)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, not *config.Error", err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantKey) {
				t.Errorf("error %q does not name key %q", msg, tc.wantKey)
			}
			if tc.wantValue != "" && !strings.Contains(msg, tc.wantValue) {
				t.Errorf("error %q does not name value %q", msg, tc.wantValue)
			}
		})
	}
}

func TestPrefixLimit(t *testing.T) {
	// 14 characters + ":" + 12 + ": " is exactly 29.
	if _, err := Parse([]byte("log: {prefix: fourteen-chars}")); err != nil {
		t.Errorf("a 14-character prefix must fit: %v", err)
	}
	if _, err := Parse([]byte("log: {prefix: fifteen-chars-x}")); err == nil {
		t.Error("a 15-character prefix must not fit")
	}
}

func TestLoadResolution(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("mode: audit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(envFile, []byte("mode: enforce\nfailure: open\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv(EnvVar, envFile)
	cfg, err := Load(file)
	if err != nil || cfg.Mode != ModeAudit || cfg.Path != file {
		t.Errorf("--config must win over the environment: %+v, %v", cfg, err)
	}
	cfg, err = Load("")
	if err != nil || cfg.Failure != FailOpen {
		t.Errorf("the environment must be used without --config: %+v, %v", cfg, err)
	}

	// A file named explicitly must exist. The message says so without the
	// system's "no such file or directory", which podman reads as a missing
	// hook binary (exit 127, "a command that was not found").
	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	var ce *Error
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "config file "+missing+" does not exist (") || strings.Contains(err.Error(), "no such file") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing --config file: got %v", err)
	}
	t.Setenv(EnvVar, filepath.Join(dir, "missing-env.yaml"))
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "missing-env.yaml") {
		t.Errorf("missing %s file: got %v", EnvVar, err)
	}
}

// A YAML error names the file and the line at fault, once.
func TestYAMLErrorLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		msg        string
	}{
		// The old example's trap: an empty list, then items under it.
		{"items after an empty list", "# c\n#\n\nproxies: []\n  - 198.51.100.1:3128\n", 5, "did not find expected key"},
		{"unknown key", "mode: audit\n\nlogg:\n  rate: 1/second\n", 3, `unknown key "logg"`},
		{"not a number", "log:\n  burst: many\n", 2, `"many" must be a number`},
		{"not a list", "mode: audit\nproxies: 198.51.100.1:3128\n", 2, "must be a list"},
		{"tab", "mode: audit\n\tproxies: []\n", 2, "tab character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Source{Path: path, Explicit: true}.Load()
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != tc.line || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v (%#v), want line %d and %q", err, ce, tc.line, tc.msg)
			}
			want := fmt.Sprintf("config %s, line %d: ", path, tc.line)
			if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "config") != 1+strings.Count(path, "config") {
				t.Errorf("%q: want one prefix %q", err, want)
			}
		})
	}
}

// A value in the wrong shape says what the key takes: the keys of a mapping,
// and for allow and proxies that host names are not supported, and why.
func TestErrorsSayWhatTheKeyTakes(t *testing.T) {
	const noNames = "host names are not supported: the rules match addresses"
	for _, tc := range []struct {
		name, yaml string
		want       []string
		not        string
	}{
		{"allow entry as a name", "allow: [api.github.com]", []string{`must be a mapping of keys (cidr, ports, protocol), as "- cidr: `, noNames}, ""},
		{"allow cidr as a name", "allow: [{cidr: api.github.com}]", []string{`allow[0].cidr: "api.github.com" is not an address or CIDR`, noNames}, ""},
		{"proxy as a name", "proxies: ['proxy.example:3128']", []string{`proxies[0]: "proxy.example:3128" is not IP:port`, noNames}, ""},
		{"log as a word", "log: kernel", []string{`"kernel" must be a mapping of keys (target, group, prefix, rate, burst, required)`}, ""},
		{"nri as a word", "nri: off", []string{`must be a mapping of keys (excludeNamespaces)`}, ""},
		{"allow cidr malformed", "allow: [{cidr: 10.0.0.0/33}]", []string{"is not an address or CIDR"}, noNames},
		{"proxy ipv6 without brackets", "proxies: ['2001:db8::1:3128']", []string{"has no port"}, noNames},
		{"proxy with a bad port", "proxies: ['198.51.100.1:http']", []string{"is not IP:port"}, noNames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error for %q", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q: error %q does not say %q", tc.yaml, err, w)
				}
			}
			if tc.not != "" && strings.Contains(err.Error(), tc.not) {
				t.Errorf("%q: error %q says %q", tc.yaml, err, tc.not)
			}
		})
	}
}

// An unknown key that misspells one names the key it most likely meant; one
// that is nothing like a key gets no guess.
func TestUnknownKeySuggests(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"proxy: [198.51.100.1:3128]", `unknown key "proxy" (did you mean "proxies"?)`},
		{"allowUIDs: [1337]", `unknown key "allowUIDs" (did you mean "allowUids"?)`},
		{"mod: audit", `unknown key "mod" (did you mean "mode"?)`},
		{"log: {prefixx: a}", `unknown key "prefixx" (did you mean "prefix"?)`},
		{"allow: [{cdir: 10.0.0.0/8}]", `unknown key "cdir" (did you mean "cidr"?)`},
		{"foo: 1", `unknown key "foo"`},
		{"x: 1", `unknown key "x"`},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want it to end in %s", tc.yaml, err, tc.want)
		}
	}
}
