// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// These run `install` and `nri` in-process on files in temporary
// directories; the end-to-end tests with runc, podman and NRI's runtime
// side are in install/, e2e/podman and nriplugin/.

func exe(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bypass-hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstallUsage(t *testing.T) {
	t.Setenv("BYPASS_HOOK_CONFIG", "")
	for _, args := range [][]string{
		{"install"},
		{"install", "bundle"},
		{"install", "bundle", t.TempDir(), "--force"}, // --force is for hooks-dir
		{"install", "frobnicate", "/tmp/x"},
		{"install", "hooks-dir", "/a", "/b"},
		{"install", "config", t.TempDir() + "/config.yaml"}, // no --config to copy from
		{"install", "--no-such-flag", "bundle", "/x"},
	} {
		if code, _, errb := runCLI(t, "", args...); code != 2 || errb == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errb)
		}
	}
}

func TestInstallHooksDirCLI(t *testing.T) {
	bin := exe(t)
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	dir := filepath.Join(t.TempDir(), "hooks.d")
	// Flags after the positional arguments, as users type them.
	code, out, errb := runCLI(t, "", "install", "hooks-dir", dir, "--binary", bin, "--config", cfgPath, "--timeout", "7", "--force")
	if code != 0 || !strings.Contains(out, "selection: annotated") {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	var e struct {
		Hook specs.Hook `json:"hook"`
		When struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"when"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "bypass-hook.json"))
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	if e.Hook.Path != bin || *e.Hook.Timeout != 7 || len(e.When.Annotations) != 1 ||
		strings.Join(e.Hook.Args, " ") != bin+" --config "+cfgPath+" hook" {
		t.Errorf("wrote %s", data)
	}

	// A config the hook would refuse writes nothing, and says so: exit 2.
	bad, _ := writeConfig(t, "proxies: [nonsense]\n")
	dir2 := filepath.Join(t.TempDir(), "hooks.d")
	if code, _, errb := runCLI(t, "", "--config", bad, "install", "hooks-dir", dir2, "--binary", bin, "--force"); code != 2 || !strings.Contains(errb, "proxies[0]") {
		t.Errorf("bad config: exit %d, %q", code, errb)
	}
	if _, err := os.Stat(dir2); err == nil {
		t.Error("wrote a hooks dir for a bad config")
	}
	if code, _, errb := runCLI(t, "", "install", "hooks-dir", dir2, "--binary", "/nonexistent/bypass-hook", "--config", cfgPath, "--force"); code != 1 || !strings.Contains(errb, "/nonexistent/bypass-hook") {
		t.Errorf("missing binary: exit %d, %q", code, errb)
	}
}

// install hooks-dir writes where the engines read, and refuses a directory
// none reads (issue 10, hole 7). Under --root both engines count as
// installed and their config is read under the root, so the answer does not
// depend on this machine.
func TestInstallHooksDirWhereEnginesRead(t *testing.T) {
	root := t.TempDir()
	put := func(p, data string, mode os.FileMode) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	put("/usr/bin/bypass-hook", "#!/bin/sh\n", 0o755)
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\n")
	put(cfgPath, "proxies: [198.51.100.1:3128]\n", 0o644)
	args := func(extra ...string) []string {
		return append([]string{"--config", cfgPath, "install", "hooks-dir", "--root", root, "--binary", "/usr/bin/bypass-hook"}, extra...)
	}
	exists := func(p string) bool {
		_, err := os.Stat(filepath.Join(root, p, "bypass-hook.json"))
		return err == nil
	}

	// No DIR: the engines' default.
	code, out, errb := runCLI(t, "", args()...)
	if code != 0 || !exists("/usr/share/containers/oci/hooks.d") || !strings.Contains(out, "read by podman and CRI-O") {
		t.Fatalf("no DIR: exit %d %q %q", code, out, errb)
	}
	// A DIR no engine reads: refused, with what they read, nothing written.
	code, out, errb = runCLI(t, "", args("/etc/containers/oci/hooks.d")...)
	if code != 1 || !strings.Contains(errb, "/usr/share/containers/oci/hooks.d") || !strings.Contains(errb, "--force") || exists("/etc/containers/oci/hooks.d") {
		t.Errorf("a DIR nobody reads: exit %d %q %q", code, out, errb)
	}
	// --force writes it, loudly.
	code, out, errb = runCLI(t, "", args("/etc/containers/oci/hooks.d", "--force")...)
	if code != 0 || !strings.Contains(errb, "WARNING") || !exists("/etc/containers/oci/hooks.d") {
		t.Errorf("--force: exit %d %q %q", code, out, errb)
	}
	// podman configured to read /etc's and CRI-O at its default: one file
	// for each.
	put("/etc/containers/containers.conf", "[engine]\nhooks_dir = [\"/etc/containers/oci/hooks.d\"]\n", 0o644)
	code, out, errb = runCLI(t, "", args()...)
	if code != 0 || !strings.Contains(out, "/etc/containers/oci/hooks.d/bypass-hook.json, read by podman ") {
		t.Errorf("podman's hooks_dir: exit %d %q %q", code, out, errb)
	}
	if !strings.Contains(out, "/usr/share/containers/oci/hooks.d/bypass-hook.json, read by CRI-O") {
		t.Errorf("CRI-O's default not written: %q", out)
	}
	code, out, errb = runCLI(t, "", args("/etc/containers/oci/hooks.d")...)
	if code != 0 {
		t.Errorf("the DIR podman reads: exit %d %q %q", code, out, errb)
	}
}

func TestInstallBundleCLI(t *testing.T) {
	bin := exe(t)
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\n")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":"1.2.0","process":{"args":["sh"]}}`), 0o644)
	for i, want := range []string{"added the hooks to", "nothing to change in"} {
		code, out, errb := runCLI(t, "", "install", "bundle", dir, "--binary", bin, "--config", cfgPath)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("run %d: exit %d, %q %q; want %q", i+1, code, out, errb, want)
		}
	}
	var spec specs.Spec
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(data, &spec); err != nil || spec.Hooks == nil ||
		len(spec.Hooks.CreateRuntime) != 1 || spec.Hooks.CreateRuntime[0].Args[3] != "create" ||
		len(spec.Hooks.Poststop) != 1 || spec.Hooks.Poststop[0].Args[3] != "poststop" {
		t.Errorf("config.json: %v\n%s", err, data)
	}
	if code, out, _ := runCLI(t, "", "install", "bundle", dir, "--remove"); code != 0 || !strings.HasPrefix(out, "removed the hooks") {
		t.Errorf("--remove: exit %d %q", code, out)
	}
	if code, _, errb := runCLI(t, "", "install", "bundle", t.TempDir(), "--binary", bin, "--config", cfgPath); code != 1 || !strings.Contains(errb, "config.json") {
		t.Errorf("no bundle: exit %d %q", code, errb)
	}
}

func TestInstallBinaryAndConfigCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	if code, out, errb := runCLI(t, "", "install", "binary", dir); code != 0 || !strings.Contains(out, filepath.Join(dir, "bypass-hook")) {
		t.Fatalf("exit %d %q %q", code, out, errb)
	}
	self, _ := os.Executable()
	a, _ := os.ReadFile(self)
	b, _ := os.ReadFile(filepath.Join(dir, "bypass-hook"))
	if len(a) == 0 || string(a) != string(b) {
		t.Error("the copy differs from the executable")
	}

	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\n")
	dst := filepath.Join(t.TempDir(), "etc", "config.yaml")
	if code, _, errb := runCLI(t, "", "--config", cfgPath, "install", "config", dst); code != 0 {
		t.Fatalf("exit %d %q", code, errb)
	}
	want, _ := os.ReadFile(cfgPath)
	if got, _ := os.ReadFile(dst); string(got) != string(want) {
		t.Errorf("installed config %q", got)
	}
}

func TestNRIUsage(t *testing.T) {
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\n")
	for _, args := range [][]string{
		{"nri", "extra"},
		{"nri", "--plugin-index", "7", "--config", cfgPath, "--binary", exe(t)},
		{"nri", "--plugin-name", "bad name", "--config", cfgPath, "--binary", exe(t)},
		{"nri", "--config", cfgPath, "--binary", "/nonexistent/bypass-hook"},
		// A broken or absent config does not stop the plugin: it runs and
		// the hooks it injects refuse the containers (nriplugin's tests).
	} {
		if code, _, errb := runCLI(t, "", args...); code != 2 || errb == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errb)
		}
	}
}

// containerd starts a pre-registered plugin without arguments and with
// NRI_PLUGIN_SOCKET set: the binary runs `nri`. Here the socket is not open,
// which the plugin reports (on stderr: it is not configured yet, so it has
// not moved to the hook log).
func TestNoArgumentsWithNRISocketRunsThePlugin(t *testing.T) {
	cfgPath, logPath := writeConfig(t, "proxies: [198.51.100.1:3128]\n")
	t.Setenv("BYPASS_HOOK_CONFIG", cfgPath)
	t.Setenv("NRI_PLUGIN_SOCKET", "987")
	t.Setenv("NRI_PLUGIN_NAME", "bypass-hook")
	t.Setenv("NRI_PLUGIN_IDX", "10")
	code, _, errb := runCLI(t, "")
	if code != 1 || !strings.Contains(errb, "invalid socket (987)") {
		t.Errorf("exit %d, stderr %q; want 1 and the plugin saying the socket is not open", code, errb)
	}
	if data, err := os.ReadFile(logPath); err == nil {
		t.Errorf("the plugin wrote the hook log before the runtime configured it:\n%s", data)
	}
}

// install state-dir makes the directory as the hook would, and refuses one
// that the hook would refuse rather than loosen or tighten it silently.
func TestInstallStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		testnet.RequireRoot(t) // the state directory must be owned by root
	}
	dir := filepath.Join(t.TempDir(), "run", "bypass-hook")
	code, out, errb := runCLI(t, "", "install", "state-dir", dir)
	if code != 0 || !strings.Contains(out, dir) {
		t.Fatalf("exit %d: %s %s", code, out, errb)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("made %v, %v; want mode 0700", fi.Mode(), err)
	}
	if code, _, _ := runCLI(t, "", "install", "state-dir", dir); code != 0 {
		t.Errorf("a second run: exit %d", code)
	}
	os.Chmod(dir, 0o755)
	if code, _, errb := runCLI(t, "", "install", "state-dir", dir); code != 1 || !strings.Contains(errb, "chmod 700") {
		t.Errorf("a 0755 directory: exit %d, %s", code, errb)
	}
}

// A ConfigMap that does not parse must not keep the plugin from starting:
// install config keeps the node's last good config, and says so.
func TestInstallConfigKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	dst := filepath.Join(dir, "node", "config.yaml")
	os.WriteFile(good, []byte("proxies: ['198.51.100.1:3128']\n"), 0o644)
	os.WriteFile(bad, []byte("proxies: [nonsense]\n"), 0o644)

	// With no config on the node the plugin fails closed (issue 10, hole 6);
	// failing here would keep it from starting, and NRI would fail open.
	if code, _, errb := runCLI(t, "", "--config", bad, "install", "config", dst); code != 0 || !strings.Contains(errb, "proxies[0]") || !strings.Contains(errb, "REFUSES") {
		t.Errorf("a bad config and no config on the node: exit %d, %s; want 0, the error and what the plugin does", code, errb)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("a bad config was written to the node: %v", err)
	}
	if code, _, errb := runCLI(t, "", "--config", good, "install", "config", dst); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	code, _, errb := runCLI(t, "", "--config", bad, "install", "config", dst)
	if code != 0 || !strings.Contains(errb, "KEEPING") || !strings.Contains(errb, "proxies[0]") {
		t.Errorf("a bad config over a good one: exit %d, %s; want 0 and the error", code, errb)
	}
	if data, _ := os.ReadFile(dst); string(data) != "proxies: ['198.51.100.1:3128']\n" {
		t.Errorf("the node's config became %q", data)
	}
	// The refusal is marked beside the config, for the plugin's readiness,
	// until a good config replaces it.
	if why, err := os.ReadFile(dst + ".rejected"); err != nil || !strings.Contains(string(why), "proxies[0]") {
		t.Errorf("the refused config is not marked: %q %v", why, err)
	}
	if code, _, errb := runCLI(t, "", "--config", good, "install", "config", dst); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if _, err := os.Stat(dst + ".rejected"); !os.IsNotExist(err) {
		t.Errorf("a good config left the mark of a refused one: %v", err)
	}
}

func TestInstallCDICLI(t *testing.T) {
	bin := exe(t)
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	dir := filepath.Join(t.TempDir(), "cdi")
	spec := filepath.Join(dir, "bypass-hook.io-fence.json")
	code, out, errb := runCLI(t, "", "install", "cdi", dir, "--binary", bin, "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "wrote "+spec) {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	var got struct {
		Devices []struct {
			Name           string
			ContainerEdits struct {
				Hooks []struct {
					HookName, Path string
					Args           []string
				}
			}
		}
	}
	data, _ := os.ReadFile(spec)
	if err := json.Unmarshal(data, &got); err != nil || len(got.Devices) != 2 || len(got.Devices[0].ContainerEdits.Hooks) != 2 {
		t.Fatalf("spec: %v\n%s", err, data)
	}
	if h := got.Devices[0].ContainerEdits.Hooks[0]; h.HookName != "createRuntime" || h.Path != bin ||
		strings.Join(h.Args, " ") != bin+" --config "+cfgPath+" create --cdi-device default" {
		t.Errorf("device %s, first hook %+v", got.Devices[0].Name, h)
	}
	if code, out, _ := runCLI(t, "", "install", "cdi", dir, "--binary", bin, "--config", cfgPath); code != 0 || !strings.Contains(out, "unchanged") {
		t.Errorf("second install: exit %d, %q; want unchanged", code, out)
	}
	// A config the hook would refuse writes nothing: exit 2.
	bad, _ := writeConfig(t, "proxies: [nonsense]\n")
	dir2 := filepath.Join(t.TempDir(), "cdi")
	if code, _, errb := runCLI(t, "", "--config", bad, "install", "cdi", dir2, "--binary", bin); code != 2 || !strings.Contains(errb, "proxies[0]") {
		t.Errorf("bad config: exit %d, %q", code, errb)
	}
	if _, err := os.Stat(dir2); err == nil {
		t.Error("wrote a CDI directory for a bad config")
	}
	for i, want := range []string{"removed " + spec, "nothing to remove"} {
		if code, out, errb := runCLI(t, "", "install", "cdi", dir, "--remove"); code != 0 || !strings.Contains(out, want) {
			t.Errorf("remove #%d: exit %d, %q %q; want %q", i+1, code, out, errb, want)
		}
	}
}
