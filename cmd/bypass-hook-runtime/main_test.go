// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
