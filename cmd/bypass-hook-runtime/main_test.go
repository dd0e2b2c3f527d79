// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// build makes the wrapper binary with a bypass-hook-oci beside it, as the
// package installs them.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: no go tool in PATH to build the wrapper")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bypass-hook-runtime")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "bypass-hook-oci"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// The wrapper becomes the real runtime: same arguments (its own taken
// off), same environment, same standard streams, the runtime's exit status.
func TestExecsTheRuntimeUntouched(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	rt := filepath.Join(dir, "fake-runc")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\necho \"env=$MARK\"\nread line; echo \"stdin=$line\"\nexit 7\n"
	if err := os.WriteFile(rt, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("proxies: ['198.51.100.1:3128']\n"), 0o600)
	bundle := filepath.Join(dir, "b")
	os.Mkdir(bundle, 0o700)
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","process":{"env":["A=b c"]}}`), 0o600)

	args := []string{"--root", "/run/r", "create", "--bundle", bundle, "--pid-file", "a file with spaces", "web"}
	cmd := exec.Command(bin, append([]string{"--bypass-hook-config", cfg, "--bypass-hook-runtime=" + rt}, args...)...)
	cmd.Env = []string{"MARK=kept"}
	cmd.Stdin = strings.NewReader("hello\n")
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit %v, want the runtime's 7; stdout %s", err, out)
	}
	want := strings.Join(args, "\n") + "\nenv=kept\nstdin=hello\n"
	if string(out) != want {
		t.Errorf("the runtime saw:\n%s\nwant:\n%s", out, want)
	}
	var spec struct {
		Hooks map[string][]struct{ Path string } `json:"hooks"`
	}
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if json.Unmarshal(b, &spec) != nil || len(spec.Hooks["createRuntime"]) != 1 || spec.Hooks["createRuntime"][0].Path != filepath.Join(filepath.Dir(bin), "bypass-hook-oci") {
		t.Errorf("config.json after create: %s", b)
	}

	// A refusal: the runtime never runs, one line on stderr, exit 1.
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"process":{"env":["bypass_hook_enabled=false"]}}`), 0o600)
	cmd = exec.Command(bin, "--bypass-hook-config", cfg, "--bypass-hook-runtime", rt, "create", "-b", bundle, "web")
	cmd.Env = []string{}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(out) != 0 || !strings.Contains(stderr.String(), "bypass-hook-runtime: environment variable bypass_hook_enabled") {
		t.Errorf("refusal: %v, stdout %q, stderr %q", err, out, stderr.String())
	}
}

// runc takes create's flags after the container id too (urfave/cli moves
// them in front of it): the wrapper must edit the bundle runc creates from,
// not the one in its working directory (where containerd's shim runs it, a
// bundle of its own). Real runc, a hook that notes each call.
func TestRealRuncRunsTheHooksWhereverTheBundleFlagIs(t *testing.T) {
	bin := build(t)
	dir := filepath.Dir(bin)
	marks := filepath.Join(dir, "hook-calls")
	hook := "#!/bin/sh\ncat >/dev/null\necho \"$@\" >> " + marks + "\n"
	if err := os.WriteFile(filepath.Join(dir, "bypass-hook-oci"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("proxies: ['198.51.100.1:3128']\nselection: annotated\n"), 0o600)

	b := testnet.NewBundle(t, testnet.BundleOpts{Env: []string{"BYPASS_HOOK_ENABLED=true"}, Args: []string{"true"}})
	id := testnet.RandName("wrapped-")
	b.ID = id
	b.Spec.Linux.CgroupsPath = "/" + id
	b.WriteSpec(t)
	decoy := testnet.NewBundle(t, testnet.BundleOpts{}) // the shim's working directory: not opted in
	t.Cleanup(func() { b.Runc("delete", "-f", id) })

	out, err := os.Create(filepath.Join(dir, "output.log")) // a file: the container inherits runc's stdio
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "--bypass-hook-config", cfg, "--root", b.Root, "create", id, "--bundle", b.Dir)
	cmd.Dir = decoy.Dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(out.Name())
		t.Fatalf("create through the wrapper: %v\n%s", err, log)
	}
	if st := b.State(t); st.Bundle != b.Dir {
		t.Fatalf("runc created from %s, want %s", st.Bundle, b.Dir)
	}
	calls, _ := os.ReadFile(marks)
	if !strings.Contains(string(calls), "create") {
		t.Errorf("runc created the opted-in container without running the createRuntime hook (calls: %q)", calls)
	}
}
