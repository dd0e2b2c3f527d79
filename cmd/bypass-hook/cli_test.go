// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/cli"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// run is the binary, in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return newApp().Main(args, cli.IO{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// Every command of the table answers -h, --help and help COMMAND with its
// usage on stdout and exit 0, and says what it reads and writes with an
// example: a command added to the table is held to this by being there.
func TestEveryCommandHelps(t *testing.T) {
	n := 0
	newApp().Walk(func(path []string, cmd *cli.Command) {
		n++
		name := strings.Join(path, " ")
		for _, args := range [][]string{append(path, "-h"), append(path, "--help"), append([]string{"help"}, path...)} {
			code, out, errb := runCLI(t, "", args...)
			if code != 0 || !strings.HasPrefix(out, "usage: bypass-hook "+name) || errb != "" {
				t.Errorf("%q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errb)
			}
		}
		if !strings.Contains(cmd.Help, "Example") {
			t.Errorf("%s: the help has no example:\n%s", name, cmd.Help)
		}
	})
	if n < 15 {
		t.Errorf("walked %d commands: is the table whole?", n)
	}
	for _, stage := range []string{"create", "poststop", "hook"} {
		if _, out, _ := runCLI(t, "", stage, "--help"); !strings.Contains(out, "stdin") {
			t.Errorf("%s --help does not say the OCI state comes on stdin:\n%s", stage, out)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	_, v1, _ := runCLI(t, "", "--version")
	_, v2, _ := runCLI(t, "", "version")
	if !strings.HasPrefix(v1, "bypass-hook ") || v1 != v2 {
		t.Errorf("--version %q and version %q", v1, v2)
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		if code, out, _ := runCLI(t, "", args...); code != 0 || !strings.Contains(out, "install hooks-dir") || !strings.Contains(out, "check") {
			t.Errorf("%q: exit %d\n%s", args, code, out)
		}
	}
	if code, out, _ := runCLI(t, "", "completion", "bash"); code != 0 || !strings.Contains(out, "hooks-dir") || !strings.Contains(out, "--log-format") {
		t.Errorf("completion bash: exit %d\n%s", code, out)
	}
}

// A flag a command does not take is a usage error, never ignored.
func TestMisappliedFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"version", "--debug"},
		{"--debug", "version"},
		{"status", "--debug"},
		{"install", "binary", dir, "--remove"},
		{"install", "state-dir", dir, "--config", "x"},
		{"install", "bundle", dir, "--root", dir},
		{"config", "default", "--config", "x"},
		{"config", "validate", "x", "--json"},
		{"create", "--json"},
		{"nri", "--summary"},
		{"monitor", "--remove"},
		{"check", "--remove"},
		{"apply", "extra"},
		{"apply", "--grace", "1s"},
		{"completion", "bash", "--debug"},
		{"nri", "--log-format", "xml"},
		{"monitor", "--log-level", "loud"},
	} {
		code, out, errb := runCLI(t, "", args...)
		if code != 2 || out != "" || errb == "" {
			t.Errorf("%q: exit %d (want 2)\nstdout: %s\nstderr: %s", args, code, out, errb)
		}
	}
}

// Every registration kind takes --remove, and removes.
func TestInstallRemove(t *testing.T) {
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	bin := filepath.Join(t.TempDir(), "bypass-hook")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hooksDir := t.TempDir()
	file := filepath.Join(hooksDir, install.HooksDirFileName)
	if code, _, errb := runCLI(t, "", "install", "hooks-dir", hooksDir, "--force", "--binary", bin, "--config", cfg); code != 0 {
		t.Fatalf("hooks-dir: exit %d: %s", code, errb)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := runCLI(t, "", "install", "hooks-dir", hooksDir, "--remove"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("hooks-dir --remove: exit %d: %s%s", code, out, errb)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("hooks-dir --remove left %s: %v", file, err)
	}
	if code, out, _ := runCLI(t, "", "install", "hooks-dir", hooksDir, "--remove"); code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Errorf("hooks-dir --remove again: exit %d: %s", code, out)
	}

	bundle := t.TempDir()
	spec := `{"ociVersion":"1.0.2","process":{"args":["sh"]},"root":{"path":"rootfs"}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errb := runCLI(t, "", "install", "bundle", bundle, "--binary", bin, "--config", cfg); code != 0 {
		t.Fatalf("bundle: exit %d: %s", code, errb)
	}
	if code, out, errb := runCLI(t, "", "install", "bundle", bundle, "--binary", bin, "--remove"); code != 0 || !strings.Contains(out, "removed the hooks") {
		t.Fatalf("bundle --remove: exit %d: %s%s", code, out, errb)
	}
	data, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if strings.Contains(string(data), bin) {
		t.Errorf("bundle --remove left the hooks: %s", data)
	}
}

func TestConfigValidate(t *testing.T) {
	bad, _ := writeConfig(t, "proxies: [198.51.100.1]")
	code, out, errb := runCLI(t, "", "config", "validate", bad)
	if code != 2 || out != "" || !strings.Contains(errb, "proxies[0]") || !strings.Contains(errb, `"198.51.100.1"`) || !strings.Contains(errb, bad) {
		t.Errorf("bad config: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if code, _, errb := runCLI(t, "", "config", "validate", filepath.Join(t.TempDir(), "missing.yaml")); code != 2 || !strings.Contains(errb, "missing.yaml") {
		t.Errorf("missing file: exit %d: %s", code, errb)
	}

	// The example, as printed, then with its proxies uncommented.
	code, example, _ := runCLI(t, "", "config", "default")
	if code != 0 || example != string(install.ExampleConfig) {
		t.Fatalf("config default: exit %d", code)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	uncommented := regexp.MustCompile(`(?m)^#(  - .*:3128)`).ReplaceAllString(example, "$1")
	if err := os.WriteFile(path, []byte(uncommented), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := runCLI(t, "", "config", "validate", path); code != 0 || !strings.Contains(out, "198.51.100.1:3128") {
		t.Errorf("the example with its proxies uncommented: exit %d\n%s%s\n%s", code, out, errb, uncommented)
	}
}

// The summary names every way out a config leaves, not only the proxies:
// an allow entry that says nothing in the summary is a hole nobody sees.
func TestConfigValidateNamesEveryWayOut(t *testing.T) {
	path, _ := writeConfig(t, `proxies: [198.51.100.1:3128]
allow:
  - cidr: 198.51.100.64/26
    ports: [443, 8443]
    protocol: tcp
dns: [198.51.100.53]
allowUids: [1337]
otherProtocols: accept`)
	code, out, errb := runCLI(t, "", "config", "validate", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	for _, want := range []string{"198.51.100.1:3128", "198.51.100.64/26, tcp, ports 443,8443 (allow)",
		"198.51.100.53 on port 53 (dns)", "uids 1337 to anywhere (allowUids)", "ICMP to anywhere (otherProtocols: accept)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the summary does not say %q:\n%s", want, out)
		}
	}

	// Only the proxies: the summary names no other way out.
	path, _ = writeConfig(t, "proxies: [198.51.100.1:3128]")
	_, out, _ = runCLI(t, "", "config", "validate", path)
	if !strings.Contains(out, "except to the proxies 198.51.100.1:3128\n") {
		t.Errorf("proxies only:\n%s", out)
	}
}

// With no FILE, config validate reads the file the hook reads: --config,
// then $BYPASS_HOOK_CONFIG, then the default path, and says which.
func TestConfigValidateTheHooksFile(t *testing.T) {
	byFlag, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	byEnv, _ := writeConfig(t, "proxies: [198.51.100.2:3128]")
	t.Setenv("BYPASS_HOOK_CONFIG", byEnv)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "validate"}, byEnv + " (named by $BYPASS_HOOK_CONFIG): valid; every container: refuses and logs direct connections except to the proxies 198.51.100.2:3128"},
		{[]string{"config", "validate", "--config", byFlag}, byFlag + " (named by --config): valid;"},
		{[]string{"--config", byFlag, "config", "validate"}, byFlag + " (named by --config): valid;"},
	} {
		code, out, errb := runCLI(t, "", tc.args...)
		if code != 0 || !strings.HasPrefix(out, tc.want) {
			t.Errorf("%q: exit %d\nstdout: %s\nstderr: %s\nwant the start %q", tc.args, code, out, errb, tc.want)
		}
	}
	if code, out, errb := runCLI(t, "", "config", "validate", byFlag, "--config", byEnv); code != 2 || out != "" || !strings.Contains(errb, "not both") {
		t.Errorf("FILE and --config: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	t.Setenv("BYPASS_HOOK_CONFIG", missing)
	if code, _, errb := runCLI(t, "", "config", "validate"); code != 2 || !strings.Contains(errb, missing) {
		t.Errorf("$BYPASS_HOOK_CONFIG names a missing file: exit %d: %s", code, errb)
	}

	// The default path: what it says depends on this machine's file, but
	// it names the file and where the name came from.
	t.Setenv("BYPASS_HOOK_CONFIG", "")
	code, out, errb := runCLI(t, "", "config", "validate")
	if !strings.Contains(out+errb, "/etc/bypass-hook/config.yaml") || (code == 0 && !strings.Contains(out, "(the default path)")) {
		t.Errorf("the default path: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if _, err := os.Stat("/etc/bypass-hook/config.yaml"); os.IsNotExist(err) && (code != 0 || !strings.Contains(out, "does not exist: the hook applies the defaults; no proxies: it fences nothing")) {
		t.Errorf("no file at the default path: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
}

// check as root on this machine: it can fence, and --json parses; with a
// broken config it cannot.
func TestCheck(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "iptables", "ip6tables")
	good, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	code, out, errb := runCLI(t, "", "check", "--config", good, "--json")
	var r struct {
		CanFence bool `json:"canFence"`
		SelfTest struct {
			Attempts []struct{ Refused bool } `json:"attempts"`
			Removed  bool                     `json:"removed"`
		} `json:"selfTest"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check --json: %v\n%s\n%s", err, out, errb)
	}
	if code != 0 || !r.CanFence || len(r.SelfTest.Attempts) != 2 || !r.SelfTest.Attempts[0].Refused || !r.SelfTest.Removed {
		t.Errorf("check: exit %d, %+v\n%s\n%s", code, r, out, errb)
	}
	if code, out, _ := runCLI(t, "", "check", "--config", good); code != 0 || !strings.Contains(out, "VERDICT: this node can fence") {
		t.Errorf("check (table): exit %d\n%s", code, out)
	}

	broken, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nmode: enforcing")
	code, out, _ = runCLI(t, "", "check", "--config", broken)
	if code == 0 || !strings.Contains(out, "CANNOT fence") || !strings.Contains(out, `"enforcing"`) {
		t.Errorf("check with a broken config: exit %d\n%s", code, out)
	}
}

// status warns when refusals would be logged nowhere: the kernel target
// with nf_log_all_netns 0 (read, never changed, here).
func TestStatusWarnsKernelLog(t *testing.T) {
	testnet.RequireRoot(t)
	v, err := os.ReadFile("/proc/sys/net/netfilter/nf_log_all_netns")
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	_, _, errb := runCLI(t, "", "status", "--config", cfg)
	if warned := strings.Contains(errb, "nf_log_all_netns"); warned != (strings.TrimSpace(string(v)) == "0") {
		t.Errorf("nf_log_all_netns=%s: stderr %q", strings.TrimSpace(string(v)), errb)
	}
	nflog, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nlog: {target: nflog}")
	if _, _, errb := runCLI(t, "", "status", "--config", nflog); strings.Contains(errb, "nf_log_all_netns") {
		t.Errorf("log.target nflog needs no sysctl: stderr %q", errb)
	}
}

// apply on a node without fences says so and exits 0; a broken config is
// a config error, with nothing changed.
func TestApplyCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the state directory must be root's")
	}
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	if code, out, errb := runCLI(t, "", "apply", "--config", cfg); code != 0 || !strings.Contains(out, "no fence") {
		t.Errorf("apply with no fences: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if code, out, _ := runCLI(t, "", "apply", "--config", cfg, "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("apply --json with no fences: exit %d, %q", code, out)
	}
	broken, _ := writeConfig(t, "proxies: [proxy.example:3128]")
	if code, _, errb := runCLI(t, "", "apply", "--config", broken); code != 2 || !strings.Contains(errb, "proxies") {
		t.Errorf("apply with a broken config: exit %d, %s", code, errb)
	}
}
