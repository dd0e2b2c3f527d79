// SPDX-License-Identifier: Apache-2.0

package wrapper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

const proxies = "proxies: ['198.51.100.1:3128', '[2001:db8::1]:3128']\n"

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// bundle writes a config.json with env and annotations and an extension key
// this package does not know, and returns its directory.
func bundle(t *testing.T, env []string, annotations map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	s := map[string]any{
		"ociVersion": "1.0.2",
		"process":    map[string]any{"args": []string{"sh"}, "env": env},
		"root":       map[string]any{"path": "rootfs"},
		"linux":      map[string]any{"namespaces": []map[string]string{{"type": "network"}}},
		"x-runtime":  map[string]any{"kept": true},
	}
	if annotations != nil {
		s["annotations"] = annotations
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	return dir
}

type written struct {
	Annotations map[string]string `json:"annotations"`
	Hooks       map[string][]Hook `json:"hooks"`
	Ext         map[string]bool   `json:"x-runtime"`
}

func readWritten(t *testing.T, dir string) (written, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var w written
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatalf("config.json is not JSON: %v", err)
	}
	return w, b
}

var testHooks = Hooks{Binary: "/usr/bin/bypass-hook-oci", Config: "/etc/bh.yaml"}

func TestPrepareDecides(t *testing.T) {
	const annotated = proxies + "selection: annotated\n"
	for _, tc := range []struct {
		name   string
		cfg    string
		env    []string
		ann    map[string]string
		fence  bool
		errHas string
		annOut map[string]string // annotations written, when fenced
	}{
		{name: "selection all, no opt-in needed", cfg: proxies, env: []string{"PATH=/bin"}, fence: true},
		{name: "annotated, not opted in", cfg: annotated, env: []string{"PATH=/bin"}},
		{name: "annotated, opted in by env", cfg: annotated, env: []string{"BYPASS_HOOK_ENABLED=true"}, fence: true, annOut: map[string]string{config.AnnEnabled: "true"}},
		{name: "annotated, opted in by annotation", cfg: annotated, ann: map[string]string{config.AnnEnabled: "true"}, fence: true, annOut: map[string]string{config.AnnEnabled: "true"}},
		{name: "near miss refused", cfg: annotated, env: []string{"BYPASS-HOOK_ENABLED=true"}, errHas: "misspelling"},
		{name: "case refused", cfg: proxies, env: []string{"bypass_hook_enabled=false"}, errHas: "misspelling"},
		{name: "widening refused", cfg: proxies, env: []string{"BYPASS_HOOK_ENABLED=false"}, errHas: "selection: all"},
		{name: "audit widening refused", cfg: annotated, env: []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_MODE=audit"}, errHas: "enforce"},
		{name: "no proxies: nothing", cfg: "", env: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := bundle(t, tc.env, tc.ann)
			_, before := readWritten(t, dir)
			out, err := Prepare(dir, mustConfig(t, tc.cfg), testHooks)
			_, after := readWritten(t, dir)
			if tc.errHas != "" {
				var ae *config.AnnotationError
				if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errors.As(err, &ae) {
					t.Fatalf("want a refusal with %q, got %v", tc.errHas, err)
				}
				if !bytes.Equal(before, after) {
					t.Error("a refused container's config.json was changed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Fence != tc.fence || out.Changed != tc.fence {
				t.Fatalf("got %+v, want fence %v", out, tc.fence)
			}
			w, _ := readWritten(t, dir)
			if !tc.fence {
				if !bytes.Equal(before, after) {
					t.Error("config.json of a container not selected was changed")
				}
				return
			}
			if len(w.Hooks["createRuntime"]) != 1 || len(w.Hooks["poststop"]) != 1 {
				t.Fatalf("hooks %+v, want one createRuntime and one poststop", w.Hooks)
			}
			c := w.Hooks["createRuntime"][0]
			if c.Path != testHooks.Binary || strings.Join(c.Args, " ") != "/usr/bin/bypass-hook-oci --config /etc/bh.yaml create" {
				t.Errorf("createRuntime hook %+v", c)
			}
			if p := w.Hooks["poststop"][0]; strings.Join(p.Args, " ") != "/usr/bin/bypass-hook-oci --config /etc/bh.yaml poststop" {
				t.Errorf("poststop hook %+v", p)
			}
			if !w.Ext["kept"] {
				t.Error("a key the wrapper does not know was lost")
			}
			for k, v := range tc.annOut {
				if w.Annotations[k] != v {
					t.Errorf("annotations %v, want %s=%s (the hook reads the opt-in from them)", w.Annotations, k, v)
				}
			}
		})
	}
}

// A second create of the same bundle (an engine's retry), or a bundle that
// has the hook already (the CDI device under a Docker that reads CDI), gets
// no second hook.
func TestPrepareOnce(t *testing.T) {
	cfg := mustConfig(t, proxies)
	dir := bundle(t, nil, nil)
	if _, err := Prepare(dir, cfg, testHooks); err != nil {
		t.Fatal(err)
	}
	_, first := readWritten(t, dir)
	out, err := Prepare(dir, cfg, testHooks)
	if err != nil {
		t.Fatal(err)
	}
	_, second := readWritten(t, dir)
	if out.Changed || !bytes.Equal(first, second) {
		t.Errorf("a second prepare changed config.json (changed=%v)", out.Changed)
	}

	dir = bundle(t, nil, nil)
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	var top map[string]any
	json.Unmarshal(b, &top)
	top["hooks"] = map[string]any{
		"createRuntime": []map[string]any{{"path": "/usr/local/bin/other"}, {"path": testHooks.Binary, "args": []string{"bypass-hook-oci", "--cdi-device", "default", "create"}}},
		"poststop":      []map[string]any{{"path": "/opt/elsewhere/bypass-hook-oci", "args": []string{"bypass-hook-oci", "poststop"}}},
	}
	b, _ = json.Marshal(top)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
	os.Chmod(filepath.Join(dir, "config.json"), 0o600)
	if _, err := Prepare(dir, cfg, testHooks); err != nil {
		t.Fatal(err)
	}
	w, _ := readWritten(t, dir)
	if n := len(w.Hooks["createRuntime"]); n != 2 {
		t.Errorf("createRuntime has %d hooks, want the two there (another's and bypass-hook's)", n)
	}
	if n := len(w.Hooks["poststop"]); n != 2 {
		t.Errorf("poststop has %d hooks, want ours added beside one of the same name elsewhere", n)
	}
	if st, _ := os.Stat(filepath.Join(dir, "config.json")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the file's own 0600 kept", st.Mode().Perm())
	}
}

func TestPrepareRefusesOddFiles(t *testing.T) {
	cfg := mustConfig(t, proxies)
	dir := t.TempDir()
	if _, err := Prepare(dir, cfg, testHooks); err == nil {
		t.Error("a bundle without config.json was accepted")
	}
	os.WriteFile(filepath.Join(dir, "real.json"), []byte(`{}`), 0o600)
	os.Symlink(filepath.Join(dir, "real.json"), filepath.Join(dir, "config.json"))
	if _, err := Prepare(dir, cfg, testHooks); err == nil {
		t.Error("a config.json that is a symlink was followed")
	}
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`[1]`), 0o600)
	if _, err := Prepare(dir, cfg, testHooks); err == nil {
		t.Error("a config.json that is not an object was accepted")
	}
}

// killEnv makes the test binary a writer that prepares the bundle named in
// it and kills itself with SIGKILL at the step of the write in killStepEnv,
// for TestSIGKILLLeavesConfigWhole.
const (
	killEnv     = "BYPASS_HOOK_WRAPPER_TEST_PREPARE"
	killStepEnv = "BYPASS_HOOK_WRAPPER_TEST_KILL_AT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(killEnv); dir != "" {
		at, _ := strconv.Atoi(os.Getenv(killStepEnv))
		n := 0
		step = func() {
			if n++; n == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
		cfg, err := config.Parse([]byte(proxies))
		if err == nil {
			_, err = Prepare(dir, cfg, testHooks)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A runtime wrapper killed at any moment (the engine's timeout, the OOM
// killer) must leave config.json as it was or as it is meant to be, never
// half written: runc would then fail to start, or worse start, a container
// from a truncated spec. The writer is killed at every step of the write in
// turn: after it made its file, after each chunk, before and after the rename.
func TestSIGKILLLeavesConfigWhole(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/bin"}
	for i := range 3000 {
		env = append(env, fmt.Sprintf("VAR_%d=%s", i, strings.Repeat("x", 100)))
	}
	orig := bundle(t, env, nil)
	origData, err := os.ReadFile(filepath.Join(orig, "config.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Count the steps of one whole write.
	steps := 0
	step = func() { steps++ }
	defer func() { step = func() {} }()
	if _, err := Prepare(orig, mustConfig(t, proxies), testHooks); err != nil {
		t.Fatal(err)
	}
	done, _ := os.ReadFile(filepath.Join(orig, "config.json"))
	if steps < 5 {
		t.Fatalf("a write of %d bytes took %d steps: the spec is too small to be killed in the middle", len(done), steps)
	}

	outcomes := map[string]int{}
	for at := 1; at <= steps; at++ {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), origData, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), killEnv+"="+dir, killStepEnv+"="+strconv.Itoa(at))
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("step %d: the writer was not killed: %v", at, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatalf("step %d: config.json is gone: %v", at, err)
		}
		switch {
		case bytes.Equal(got, origData):
			outcomes["as it was"]++
		case bytes.Equal(got, done):
			outcomes["finished"]++
		default:
			t.Fatalf("killed at step %d of %d: config.json is half written (%d bytes; %d before, %d when done)", at, steps, len(got), len(origData), len(done))
		}
	}
	t.Logf("killed at each of %d steps: %v", steps, outcomes)
}
