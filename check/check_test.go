// SPDX-License-Identifier: Apache-2.0

package check

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, nil)) }

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func find(items []Item, section, name string) (Item, bool) {
	for _, it := range items {
		if it.Section == section && it.Name == name {
			return it, true
		}
	}
	return Item{}, false
}

func TestConfigItems(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		err  error
		name string
		want Status
	}{
		{err: &config.Error{Key: "mode", Value: "x", Msg: "is not one of"}, name: "valid", want: Fail},
		{yaml: "proxies: [198.51.100.1:3128]", name: "valid", want: OK},
		{yaml: "proxies: []", name: "proxies", want: Fail},
		{yaml: "proxies: [198.51.100.1:3128]", name: "proxies", want: OK},
		{yaml: "proxies: [198.51.100.1:3128]\nmode: audit", name: "mode", want: Warn},
		{yaml: "proxies: [198.51.100.1:3128]\nfailure: open", name: "failure", want: Warn},
		{yaml: "proxies: [198.51.100.1:3128]\nselection: annotated", name: "selection", want: Info},
	} {
		var cfg *config.Config
		if tc.err == nil {
			cfg = mustParse(t, tc.yaml)
		}
		it, ok := find(configItems(cfg, tc.err), "config", tc.name)
		if !ok || it.Status != tc.want {
			t.Errorf("%q %v: item %s is %+v, want status %s", tc.yaml, tc.err, tc.name, it, tc.want)
		}
	}
}

// fakeHost makes a /proc, /sys, kernel config and module list of its own.
func fakeHost(t *testing.T, kconfig string, matches, targets []string) Paths {
	t.Helper()
	root := t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(kconfig))
	w.Close()
	write("proc/config.gz", gz.String())
	write("proc/net/ip_tables_matches", strings.Join(matches, "\n"))
	write("proc/net/ip_tables_targets", strings.Join(targets, "\n"))
	write("lib/modules/modules.dep", "kernel/net/netfilter/xt_limit.ko.xz: kernel/net/netfilter/x_tables.ko.xz\n")
	write("proc/sys/net/netfilter/nf_log_all_netns", "0\n")
	return Paths{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys"),
		KernelConfigs: []string{filepath.Join(root, "proc/config.gz")}, ModulesDir: filepath.Join(root, "lib/modules"),
		HooksDirs: []string{filepath.Join(root, "hooks.d")}, CDIDirs: []string{filepath.Join(root, "cdi")},
		NRISocket: filepath.Join(root, "nri.sock"), NRIPluginDir: filepath.Join(root, "nri-plugins")}
}

func TestKernelProbe(t *testing.T) {
	p := fakeHost(t, "CONFIG_NF_TABLES=y\nCONFIG_IP_NF_TARGET_REJECT=m\nCONFIG_NETFILTER_XT_MATCH_LIMIT=m\n# CONFIG_NETFILTER_XT_TARGET_LOG is not set\n",
		[]string{"conntrack"}, nil)
	k := probeKernel(p)
	for name, want := range map[string]presence{
		"nf_tables":       builtin,
		"REJECT (IPv4)":   loadable,   // =m, not loaded
		"limit match":     loadable,   // =m, in modules.dep
		"conntrack match": registered, // listed in ip_tables_matches
		"LOG target":      missing,
	} {
		if got := k.found[name]; got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	cfg := mustParse(t, "proxies: [198.51.100.1:3128]\nbackend: iptables")
	items := k.items(cfg, config.BackendIptables)
	if it, _ := find(items, "kernel", "LOG target"); it.Status != Warn {
		t.Errorf("LOG missing: %+v, want a warning (the fence refuses without logging)", it)
	}
	if _, ok := find(items, "kernel", "nft reject"); ok {
		t.Error("an nftables piece is listed for the iptables backend")
	}
	required := mustParse(t, "proxies: [198.51.100.1:3128]\nlog: {required: true}")
	if it, _ := find(k.items(required, config.BackendIptables), "kernel", "LOG target"); it.Status != Fail {
		t.Errorf("LOG missing with log.required: %+v, want a failure", it)
	}
	if it := logSysctlItem(p, cfg); it.Status != Warn || it.Fix == "" {
		t.Errorf("nf_log_all_netns=0 with target kernel: %+v, want a warning with a fix", it)
	}
	if it := logSysctlItem(p, mustParse(t, "log: {target: nflog}")); it.Status != Info {
		t.Errorf("nf_log_all_netns with target nflog: %+v, want info", it)
	}
	// Without a kernel config or module list nothing can be told.
	p.KernelConfigs, p.ModulesDir = nil, t.TempDir()
	if got := probeKernel(p).found["nf_tables"]; got != unknown {
		t.Errorf("nf_tables without any source: %s, want unknown", got)
	}
}

func TestRegistrations(t *testing.T) {
	p := fakeHost(t, "", nil, nil)
	bin := filepath.Join(t.TempDir(), "bypass-hook")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, "proxies: [198.51.100.1:3128]")
	if items := registrationItems(p, cfg); len(items) != 1 || items[0].Name != "none" || items[0].Status != Warn {
		t.Fatalf("no registrations: %+v, want one warning", items)
	}
	os.MkdirAll(p.HooksDirs[0], 0o755)
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(p.HooksDirs[0], "bypass-hook.json"),
		`{"version":"1.0.0","hook":{"path":"`+bin+`","args":["bypass-hook","hook"]},"when":{"always":true},"stages":["createRuntime","poststop"]}`)
	write(filepath.Join(p.HooksDirs[0], "other.json"),
		`{"version":"1.0.0","hook":{"path":"/usr/bin/other-hook"},"when":{"always":true},"stages":["prestart"]}`)
	items := registrationItems(p, cfg)
	if len(items) != 1 || items[0].Status != OK || !strings.Contains(items[0].Detail, "always") {
		t.Fatalf("a good hooks.d file (and another hook's): %+v", items)
	}
	os.MkdirAll(p.CDIDirs[0], 0o755)
	write(filepath.Join(p.CDIDirs[0], "bypass-hook.io-fence.json"),
		`{"cdiVersion":"0.3.0","kind":"bypass-hook.io/fence","devices":[{"name":"default","containerEdits":{"hooks":[`+
			`{"hookName":"createRuntime","path":"/nonexistent/bypass-hook","args":["bypass-hook","create"]},`+
			`{"hookName":"poststop","path":"/nonexistent/bypass-hook","args":["bypass-hook","poststop"]}]}}]}`)
	items = registrationItems(p, cfg)
	if it, _ := find(items, "registration", "cdi"); it.Status != Fail || !strings.Contains(it.Detail, "MISSING") {
		t.Errorf("a CDI spec whose binary is gone: %+v, want a failure", it)
	}
	// A registration that names another config than the one checked.
	other := filepath.Join(t.TempDir(), "other.yaml")
	write(other, "proxies: [198.51.100.9:3128]\n")
	cfg.Path = filepath.Join(t.TempDir(), "checked.yaml")
	write(cfg.Path, "proxies: [198.51.100.1:3128]\n")
	write(filepath.Join(p.HooksDirs[0], "bypass-hook.json"),
		`{"version":"1.0.0","hook":{"path":"`+bin+`","args":["bypass-hook","--config","`+other+`","hook"]},"when":{"always":true},"stages":["createRuntime"]}`)
	if it, _ := find(registrationItems(p, cfg), "registration", "hooks.d"); it.Status != Warn {
		t.Errorf("a hooks.d file with another config: %+v, want a warning", it)
	}

	// A hooks.d file where no installed engine reads (issue 10, hole 7:
	// podman 4.3 reads only /usr/share/containers/oci/hooks.d).
	write(filepath.Join(p.HooksDirs[0], "bypass-hook.json"),
		`{"version":"1.0.0","hook":{"path":"`+bin+`","args":["bypass-hook","hook"]},"when":{"always":true},"stages":["createRuntime","poststop"]}`)
	p.Engines = []install.Engine{{Name: "podman", Dirs: []string{"/usr/share/containers/oci/hooks.d"}, From: "the built-in default"}}
	if it, _ := find(registrationItems(p, cfg), "registration", "hooks.d"); it.Status != Warn || !strings.Contains(it.Detail, "NO installed engine reads") ||
		!strings.Contains(it.Detail, "podman reads /usr/share/containers/oci/hooks.d") {
		t.Errorf("a hooks.d file no engine reads: %+v, want a warning that says who reads what", it)
	}
	p.Engines = []install.Engine{{Name: "podman", Dirs: []string{p.HooksDirs[0]}, From: "/etc/containers/containers.conf"}}
	if it, _ := find(registrationItems(p, cfg), "registration", "hooks.d"); it.Status != OK {
		t.Errorf("a hooks.d file podman reads: %+v, want OK", it)
	}
}

// TestRunHere checks this machine: as root, with a config that fences, the
// node can fence, the self-test's attempts are refused, and the fence is
// gone after. The host's rules are compared by testnet.Main.
func TestRunHere(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "iptables", "ip6tables")
	for _, yaml := range []string{
		"proxies: [198.51.100.1:3128]",
		"proxies: [198.51.100.1:3128]\nlog: {target: nflog}",
		"proxies: [198.51.100.1:3128]\nmode: audit",
	} {
		t.Run(strings.ReplaceAll(yaml, "\n", ";"), func(t *testing.T) {
			cfg := mustParse(t, yaml)
			r := Run(Options{Config: cfg, SelfTest: true})
			var table bytes.Buffer
			r.WriteTable(&table)
			t.Logf("\n%s", table.String())
			st := r.SelfTest
			if st == nil || len(st.Attempts) != 2 || !st.Removed {
				t.Fatalf("self-test: %+v", st)
			}
			for _, a := range st.Attempts {
				if a.Refused != (cfg.Mode == config.ModeEnforce) {
					t.Errorf("%s in mode %s: %+v", a.To, cfg.Mode, a)
				}
			}
			var back Report
			var js bytes.Buffer
			if err := r.WriteJSON(&js); err != nil || json.Unmarshal(js.Bytes(), &back) != nil || back.SelfTest == nil {
				t.Errorf("--json does not read back: %v\n%s", err, js.String())
			}
			// This kernel has what attribution needs: refused attempts
			// are named after the check's own process.
			if cfg.Mode == config.ModeEnforce && !strings.HasPrefix(st.Attribution, "refused attempts named after the process") {
				t.Errorf("attribution: %q; want the attempts named after this process", st.Attribution)
			}
			// Where the kernel has AF_VSOCK, the monitor's program sees a
			// send on it.
			if !strings.HasPrefix(st.Vsock, "the kernel has no AF_VSOCK") && !strings.Contains(st.Vsock, "the monitor reports them: this check's send") {
				t.Errorf("AF_VSOCK: %q; want this check's send reported", st.Vsock)
			}
			if cfg.Log.Target == config.LogNflog && !st.Logged {
				t.Errorf("nflog: the log rules counted nothing: %s", st.LogDetail)
			}
			// The kernel target logs only where nf_log_all_netns is 1, and
			// then the line must be seen.
			if v, _ := os.ReadFile("/proc/sys/net/netfilter/nf_log_all_netns"); cfg.Log.Target == config.LogKernel && strings.TrimSpace(string(v)) == "1" && !st.Logged {
				t.Errorf("nf_log_all_netns=1 and no log line: %s", st.LogDetail)
			}
		})
	}
}

// TestRunBrokenConfig: a config that cannot be loaded is a failure, and
// the self-test does not run.
func TestRunBrokenConfig(t *testing.T) {
	r := Run(Options{ConfigErr: &config.Error{Key: "proxies[0]", Value: "nope", Msg: "is not IP:port"}, SelfTest: true})
	if r.CanFence || r.SelfTest != nil {
		t.Errorf("broken config: %+v", r)
	}
}

// With nf_log_all_netns on (testnet sets it for the test and restores it),
// the self-test sees its own kernel log line.
func TestRunHereKernelLogLine(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "iptables", "ip6tables")
	testnet.KernelNetnsLog(t)
	r := Run(Options{Config: mustParse(t, "proxies: [198.51.100.1:3128]"), SelfTest: true})
	if st := r.SelfTest; st == nil || !st.Logged || !r.CanFence {
		var table bytes.Buffer
		r.WriteTable(&table)
		t.Fatalf("no kernel log line seen:\n%s", table.String())
	}
	if it, _ := find(r.Items, "kernel", "nf_log_all_netns"); it.Status != OK {
		t.Errorf("nf_log_all_netns on: %+v", it)
	}
}

// The fix offered for a config that fails names what to do about that
// failure: a key to fix, or a file to name.
func TestConfigItemFix(t *testing.T) {
	_, missingConfig := config.Load("/nonexistent/config.yaml")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&config.Error{File: "/etc/x.yaml", Key: "mode", Value: "x", Msg: "is not one of"}, "fix the key named"},
		{&config.Error{File: "/etc/x.yaml", Msg: "cannot be read: permission denied"}, "name a config file that exists"},
		{missingConfig, "name a config file that exists"},
	} {
		it, _ := find(configItems(nil, tc.err), "config", "valid")
		if it.Status != Fail || !strings.Contains(it.Fix, tc.want) {
			t.Errorf("%v: %+v, want a failure whose fix says %q", tc.err, it, tc.want)
		}
	}
}
