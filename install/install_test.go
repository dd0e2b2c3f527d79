// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// fakeBinary makes an executable file named bypass-hook in a temp dir.
func fakeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bypass-hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTargetHook(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    install.Registration
		sub  string
		want specs.Hook
	}{
		{
			name: "default config, default timeout",
			t:    install.Registration{Binary: "/usr/bin/bypass-hook"},
			sub:  install.SubHook,
			want: specs.Hook{Path: "/usr/bin/bypass-hook", Args: []string{"/usr/bin/bypass-hook", "hook"},
				Env: []string{install.HookPATH}, Timeout: ptr(install.DefaultTimeout)},
		},
		{
			name: "named config, own timeout",
			t:    install.Registration{Binary: "/opt/b/bypass-hook", Config: "/etc/x.yaml", Timeout: 3},
			sub:  install.SubCreate,
			want: specs.Hook{Path: "/opt/b/bypass-hook", Args: []string{"/opt/b/bypass-hook", "--config", "/etc/x.yaml", "create"},
				Env: []string{install.HookPATH, "BYPASS_HOOK_CONFIG=/etc/x.yaml"}, Timeout: ptr(3)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.Hook(tc.sub); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Hook(%q) =\n%+v\nwant\n%+v", tc.sub, got, tc.want)
			}
		})
	}
}

func ptr(i int) *int { return &i }

func TestTargetCheck(t *testing.T) {
	bin := fakeBinary(t)
	dir := t.TempDir()
	noExec := filepath.Join(dir, "bypass-hook")
	if err := os.WriteFile(noExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/bypass-hook"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, root string
		t          install.Registration
		wantErr    string // "" for none
	}{
		{"ok", "", install.Registration{Binary: bin}, ""},
		{"ok with config", "", install.Registration{Binary: bin, Config: "/etc/bypass-hook/config.yaml"}, ""},
		{"empty", "", install.Registration{}, "no hook binary"},
		{"relative", "", install.Registration{Binary: "bypass-hook"}, "not an absolute path"},
		{"unclean", "", install.Registration{Binary: filepath.Dir(bin) + "//bypass-hook"}, "not a clean path"},
		{"missing", "", install.Registration{Binary: "/nonexistent/bypass-hook"}, "no such file"},
		{"directory", "", install.Registration{Binary: dir}, "not a regular file"},
		{"not executable", "", install.Registration{Binary: noExec}, "not executable"},
		{"relative config", "", install.Registration{Binary: bin, Config: "config.yaml"}, "config \"config.yaml\" is not an absolute path"},
		{"negative timeout", "", install.Registration{Binary: bin, Timeout: -1}, "negative"},
		{"under root", root, install.Registration{Binary: "/usr/bin/bypass-hook"}, ""},
		{"missing under root", root, install.Registration{Binary: "/usr/local/bin/bypass-hook"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Check(tc.root)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Check: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

func TestIsOurs(t *testing.T) {
	bin := fakeBinary(t)
	link := filepath.Join(t.TempDir(), "hook-link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, binary string
		want         bool
	}{
		{bin, bin, true},
		{"/usr/local/bin/bypass-hook", bin, true}, // another registration, same name
		{"/opt/bypass-hook/bin/bypass-hook", "", true},
		{link, bin, true}, // same file under another name
		{"/usr/bin/nvidia-container-runtime-hook", bin, false},
		{"/usr/bin/bypass-hook-helper", bin, false},
		{"", bin, false},
	} {
		if got := install.IsOurs(tc.path, tc.binary); got != tc.want {
			t.Errorf("IsOurs(%q, %q) = %v, want %v", tc.path, tc.binary, got, tc.want)
		}
	}
}

func TestResolveConfig(t *testing.T) {
	t.Setenv(config.EnvVar, "")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte("selection: annotated\nproxies: [198.51.100.1:3128]\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	p, cfg, err := install.ResolveConfig("", cfgPath)
	if err != nil || p != cfgPath || cfg.Selection != config.SelectAnnotated {
		t.Errorf("explicit: %q %+v %v", p, cfg, err)
	}
	// A relative name is made absolute: the runtime runs hooks elsewhere.
	t.Chdir(dir)
	if p, _, err := install.ResolveConfig("", "config.yaml"); err != nil || p != cfgPath {
		t.Errorf("relative: %q %v, want %q", p, err, cfgPath)
	}
	if _, _, err := install.ResolveConfig("", filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("an explicit config that does not exist was accepted")
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("selecton: all\n"), 0o644)
	if _, _, err := install.ResolveConfig("", bad); err == nil || !strings.Contains(err.Error(), "selecton") {
		t.Errorf("config with an unknown key: %v", err)
	}

	t.Setenv(config.EnvVar, cfgPath)
	if p, _, err := install.ResolveConfig("", ""); err != nil || p != cfgPath {
		t.Errorf("from %s: %q %v", config.EnvVar, p, err)
	}
	t.Setenv(config.EnvVar, "")

	// Under a root (DESTDIR): read there, name the path as installed.
	root := t.TempDir()
	if p, cfg, err := install.ResolveConfig(root, ""); err != nil || p != "" || cfg.Selection != config.SelectAll {
		t.Errorf("root without config: %q %+v %v", p, cfg, err)
	}
	inRoot := filepath.Join(root, config.DefaultPath)
	os.MkdirAll(filepath.Dir(inRoot), 0o755)
	os.WriteFile(inRoot, []byte("selection: annotated\n"), 0o644)
	if p, cfg, err := install.ResolveConfig(root, ""); err != nil || p != "" || cfg.Selection != config.SelectAnnotated {
		t.Errorf("root with the default config: %q %+v %v", p, cfg, err)
	}
	if p, cfg, err := install.ResolveConfig(root, config.DefaultPath); err != nil || p != config.DefaultPath || cfg.Selection != config.SelectAnnotated {
		t.Errorf("root with an explicit config: %q %+v %v", p, cfg, err)
	}
	if _, _, err := install.ResolveConfig(root, "/etc/other.yaml"); err == nil {
		t.Error("root: an explicit config that is not there was accepted")
	}
}

func TestHooksDirEntry(t *testing.T) {
	bin := fakeBinary(t)
	target := install.Registration{Binary: bin, Config: "/etc/bh.yaml"}

	all := install.NewHooksDirEntry(target, config.SelectAll)
	if all.When.Always == nil || !*all.When.Always || all.When.Annotations != nil {
		t.Errorf("selection all: when = %+v, want always", all.When)
	}
	ann := install.NewHooksDirEntry(target, config.SelectAnnotated)
	if ann.When.Always != nil || len(ann.When.Annotations) != 1 {
		t.Fatalf("selection annotated: when = %+v", ann.When)
	}
	for _, e := range []install.HooksDirEntry{all, ann} {
		if e.Version != "1.0.0" || !reflect.DeepEqual(e.Stages, []string{"createRuntime", "poststop"}) {
			t.Errorf("version %q stages %v", e.Version, e.Stages)
		}
		if !reflect.DeepEqual(e.Hook, target.Hook("hook")) {
			t.Errorf("hook %+v", e.Hook)
		}
	}

	// podman and CRI-O match the key and the value as regular expressions.
	for k, v := range ann.When.Annotations {
		kre, vre := regexp.MustCompile(k), regexp.MustCompile(v)
		for _, tc := range []struct {
			key, value string
			want       bool
		}{
			// The hook runs for any of ours and decides: it passes over
			// "false" and refuses a misspelt key or value.
			{config.AnnEnabled, "true", true},
			{config.AnnEnabled, "false", true},
			{config.AnnEnabled, "True", true},
			{"bypass-hook.io/enable", "true", true},
			{config.AnnMode, "enforce", true},
			// Keys match without regard to case, and near misses of the
			// prefix reach the hook, which refuses them (issue 10, hole 5).
			{"Bypass-Hook.io/enabled", "true", true},
			{"BYPASS-HOOK.IO/ENABLED", "true", true},
			{"bypass-hook.io.enabled", "true", true},
			{"bypass_hook.io/enabled", "true", true},
			{"Bypass-Hook.IO.Enabled", "true", true},
			{"bypas-hook.io/enabled", "true", true},
			{"bypass-hok.io/enabled", "true", true},
			{"bypass-hookXio/enabled", "true", true},
			{"io.kubernetes.pod.name", "x", false},
			{"io.podman.annotations.autoremove", "FALSE", false},
			{"org.opencontainers.image.title", "x", false},
		} {
			if got := kre.MatchString(tc.key) && vre.MatchString(tc.value); got != tc.want {
				t.Errorf("when %q: %q on %s=%q = %v, want %v", k, v, tc.key, tc.value, got, tc.want)
			}
		}
	}
}

func TestWriteHooksDir(t *testing.T) {
	bin := fakeBinary(t)
	dir := filepath.Join(t.TempDir(), "hooks.d")
	target := install.Registration{Binary: bin}
	path, err := install.WriteHooksDir("", dir, target, config.SelectAnnotated)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "bypass-hook.json") {
		t.Errorf("wrote %s", path)
	}
	data, _ := os.ReadFile(path)
	var got install.HooksDirEntry
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	if !reflect.DeepEqual(got, install.NewHooksDirEntry(target, config.SelectAnnotated)) {
		t.Errorf("read back %+v", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	// Writing again, for another selection, replaces the file and leaves nothing else.
	if _, err := install.WriteHooksDir("", dir, target, config.SelectAll); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("hooks dir holds %v", entries)
	}
	data, _ = os.ReadFile(path)
	if !strings.Contains(string(data), `"always": true`) {
		t.Errorf("rewritten file:\n%s", data)
	}

	// Nothing is written for a binary that is not there.
	dir2 := filepath.Join(t.TempDir(), "hooks.d")
	if _, err := install.WriteHooksDir("", dir2, install.Registration{Binary: "/nonexistent/bypass-hook"}, config.SelectAll); err == nil {
		t.Error("a missing binary was accepted")
	}
	if _, err := os.Stat(dir2); err == nil {
		t.Error("a hooks dir was made for a refused target")
	}
}

const bundleConfig = `{
	"ociVersion": "1.2.0",
	"process": {"args": ["sleep", "1"], "cwd": "/", "futureProcessField": {"x": 1}},
	"root": {"path": "rootfs"},
	"hooks": {
		"prestart": [{"path": "/usr/local/bin/bypass-hook", "args": ["bypass-hook", "create"]}],
		"createRuntime": [{"path": "/usr/bin/other-hook", "args": ["other-hook"], "timeout": 5, "vendorField": true}],
		"poststop": [{"path": "/usr/bin/other-hook"}]
	},
	"vendor.example/unknown": {"keep": ["me"]}
}`

func TestPatchBundle(t *testing.T) {
	bin := fakeBinary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgFile, []byte(bundleConfig), 0o640); err != nil {
		t.Fatal(err)
	}
	target := install.Registration{Binary: bin, Config: "/etc/bh.yaml"}

	changed, err := install.PatchBundle(dir, target)
	if err != nil || !changed {
		t.Fatalf("PatchBundle: changed %v, %v", changed, err)
	}
	first, _ := os.ReadFile(cfgFile)
	var spec struct {
		Hooks  specs.Hooks    `json:"hooks"`
		Vendor map[string]any `json:"vendor.example/unknown"`
		Proc   map[string]any `json:"process"`
	}
	if err := json.Unmarshal(first, &spec); err != nil {
		t.Fatalf("%v\n%s", err, first)
	}
	h := spec.Hooks
	if len(h.Prestart) != 0 { //nolint:staticcheck // prestart is what older registrations used
		t.Errorf("the old prestart registration of bypass-hook stayed: %+v", h.Prestart) //nolint:staticcheck
	}
	if len(h.CreateRuntime) != 2 || h.CreateRuntime[0].Path != "/usr/bin/other-hook" ||
		!reflect.DeepEqual(h.CreateRuntime[1], target.Hook("create")) {
		t.Errorf("createRuntime: %+v", h.CreateRuntime)
	}
	if len(h.Poststop) != 2 || h.Poststop[0].Path != "/usr/bin/other-hook" ||
		!reflect.DeepEqual(h.Poststop[1], target.Hook("poststop")) {
		t.Errorf("poststop: %+v", h.Poststop)
	}
	if spec.Vendor == nil || spec.Proc["futureProcessField"] == nil || !strings.Contains(string(first), `"vendorField": true`) {
		t.Errorf("fields the runtime-spec types do not know were lost:\n%s", first)
	}
	if st, _ := os.Stat(cfgFile); st.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", st.Mode())
	}

	// Again: nothing changes, not a byte.
	changed, err = install.PatchBundle(dir, target)
	second, _ := os.ReadFile(cfgFile)
	if err != nil || changed || string(first) != string(second) {
		t.Errorf("second PatchBundle: changed %v, %v; file changed: %v", changed, err, string(first) != string(second))
	}

	// Another binary path replaces the registration instead of adding one.
	bin2 := fakeBinary(t)
	if _, err := install.PatchBundle(dir, install.Registration{Binary: bin2}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(cfgFile)
	if n := strings.Count(string(data), `"path": "`+bin2+`"`); n != 2 || strings.Contains(string(data), bin) {
		t.Errorf("after re-registering with %s: %d hooks run it, want 2 (and none the old path):\n%s", bin2, n, data)
	}

	// Remove: only ours go; twice is the same as once.
	if changed, err := install.UnpatchBundle(dir, bin2); err != nil || !changed {
		t.Fatalf("UnpatchBundle: %v %v", changed, err)
	}
	data, _ = os.ReadFile(cfgFile)
	if strings.Contains(string(data), "bypass-hook") || !strings.Contains(string(data), "other-hook") || !strings.Contains(string(data), "vendor.example/unknown") {
		t.Errorf("after removal:\n%s", data)
	}
	if changed, err := install.UnpatchBundle(dir, bin2); err != nil || changed {
		t.Errorf("second UnpatchBundle: %v %v", changed, err)
	}
}

func TestPatchBundleNoHooksAndErrors(t *testing.T) {
	bin := fakeBinary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.json")
	os.WriteFile(cfgFile, []byte(`{"ociVersion":"1.2.0"}`), 0o644)
	if _, err := install.PatchBundle(dir, install.Registration{Binary: bin}); err != nil {
		t.Fatal(err)
	}
	if _, err := install.UnpatchBundle(dir, bin); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(cfgFile)
	if strings.Contains(string(data), "hooks") {
		t.Errorf("an empty hooks object stayed behind:\n%s", data)
	}

	for _, tc := range []struct{ name, content, want string }{
		{"not an object", `[1,2]`, "not a JSON object"},
		{"hooks not an object", `{"hooks": 3}`, "hooks"},
		{"hook without path", `{"hooks": {"poststop": [{"args": ["x"]}]}}`, "has no path"},
	} {
		os.WriteFile(cfgFile, []byte(tc.content), 0o644)
		if _, err := install.PatchBundle(dir, install.Registration{Binary: bin}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if data, _ := os.ReadFile(cfgFile); string(data) != tc.content {
			t.Errorf("%s: the file was changed", tc.name)
		}
	}
	if _, err := install.PatchBundle(t.TempDir(), install.Registration{Binary: bin}); err == nil || !strings.Contains(err.Error(), "runc spec") {
		t.Errorf("no config.json: %v", err)
	}
	if _, err := install.PatchBundle(dir, install.Registration{Binary: "relative"}); err == nil {
		t.Error("a relative binary was accepted")
	}
}

func TestCopyBinaryAndConfig(t *testing.T) {
	bin := fakeBinary(t)
	dir := filepath.Join(t.TempDir(), "opt/bypass-hook/bin")
	dst, err := install.CopyBinary(bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o755 || dst != filepath.Join(dir, "bypass-hook") {
		t.Errorf("copied to %s: %v %v", dst, st, err)
	}

	src := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(src, []byte("proxies: [198.51.100.1:3128]\n"), 0o600)
	cfgDst := filepath.Join(t.TempDir(), "etc/bypass-hook/config.yaml")
	if err := install.CopyConfig(src, cfgDst); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(cfgDst); string(data) != "proxies: [198.51.100.1:3128]\n" {
		t.Errorf("copied config: %q", data)
	}
	os.WriteFile(src, []byte("proxies: [nonsense]\n"), 0o600)
	if err := install.CopyConfig(src, cfgDst); err == nil || !strings.Contains(err.Error(), "proxies[0]") {
		t.Errorf("a config the hook refuses: %v", err)
	}
	if data, _ := os.ReadFile(cfgDst); string(data) != "proxies: [198.51.100.1:3128]\n" {
		t.Errorf("a refused config replaced the good one: %q", data)
	}
}
