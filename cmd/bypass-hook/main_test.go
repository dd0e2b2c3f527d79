// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These run the CLI in-process on inputs that never reach a namespace.

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) (cfgPath, logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "hook.log")
	cfgPath = filepath.Join(dir, "config.yaml")
	body += "\nhookLog: " + logPath + "\nstateDir: " + filepath.Join(dir, "state") + "\n"
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, logPath
}

func lastLogLine(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("hook log: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("hook log line %q is not JSON: %v", lines[len(lines)-1], err)
	}
	return m
}

const state = `{"ociVersion":"1.0.2","id":"cli-test","status":"creating","pid":999999999,"bundle":"/nonexistent"}`

func TestUsage(t *testing.T) {
	if code, _, errb := runCLI(t, ""); code != 2 || !strings.Contains(errb, "usage:") {
		t.Errorf("no command: exit %d, stderr %q", code, errb)
	}
	if code, _, errb := runCLI(t, "", "frobnicate"); code != 2 || !strings.Contains(errb, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errb)
	}
	if code, _, errb := runCLI(t, state, "create", "extra"); code != 2 || !strings.Contains(errb, "stdin") {
		t.Errorf("extra argument: exit %d, stderr %q", code, errb)
	}
	if code, out, _ := runCLI(t, "", "version"); code != 0 || !strings.HasPrefix(out, "bypass-hook ") {
		t.Errorf("version: exit %d, stdout %q", code, out)
	}
}

func TestConfigFlagPlacement(t *testing.T) {
	cfg, logPath := writeConfig(t, "mode: audit") // no proxies: nothing to fence
	for _, args := range [][]string{
		{"--config", cfg, "create"},
		{"create", "--config", cfg},
		{"--debug", "create", "--config=" + cfg},
	} {
		code, stdout, errb := runCLI(t, state, args...)
		if code != 0 || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, errb)
		}
		if m := lastLogLine(t, logPath); m["container"] != "cli-test" || !strings.Contains(m["action"].(string), "no proxies") {
			t.Errorf("%v: log line %v", args, m)
		}
	}
}

func TestEnvConfig(t *testing.T) {
	cfg, logPath := writeConfig(t, "")
	t.Setenv("BYPASS_HOOK_CONFIG", cfg)
	if code, _, errb := runCLI(t, state, "hook"); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if m := lastLogLine(t, logPath); m["stage"] != "create" {
		t.Errorf("hook with status creating must run create: %v", m)
	}
}

func TestErrorsExit2(t *testing.T) {
	good, goodLog := writeConfig(t, "proxies: ['198.51.100.1:3128']")
	bad, _ := writeConfig(t, "proxies: ['198.51.100.1:3128']\nbogus: 1")
	for _, tc := range []struct {
		name, stdin string
		args        []string
		errHas      string
	}{
		{"missing named config", state, []string{"--config", "/nonexistent/c.yaml", "create"}, "/nonexistent/c.yaml"},
		{"unknown key", state, []string{"--config", bad, "create"}, "bogus"},
		{"empty stdin", "", []string{"--config", good, "create"}, "stdin is empty"},
		{"garbage stdin", "{{{", []string{"--config", good, "create"}, "not an OCI state"},
		{"running status", strings.Replace(state, "creating", "running", 1), []string{"--config", good, "hook"}, "running"},
		{"widening annotation", strings.Replace(state, `"bundle"`, `"annotations":{"bypass-hook.io/mode":"audit"},"bundle"`, 1), []string{"--config", good, "create"}, "bypass-hook.io/mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, errb := runCLI(t, tc.stdin, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr %q", code, errb)
			}
			if stdout != "" {
				t.Errorf("stdout %q: a hook must not write to stdout", stdout)
			}
			if n := strings.Count(strings.TrimSpace(errb), "\n"); n != 0 || !strings.Contains(errb, tc.errHas) {
				t.Errorf("stderr must be one line saying %q, got %q", tc.errHas, errb)
			}
			// The config named may be the broken one: then the detail goes
			// to the default hook log, which a test cannot read.
			if tc.args[1] == good {
				m := lastLogLine(t, goodLog)
				if m["level"] != "error" || m["exit"] != float64(2) || !strings.Contains(fmt.Sprint(m["error"]), tc.errHas) {
					t.Errorf("hook log line %v", m)
				}
			}
		})
	}
}

// With no hook log, standard error still gets one line, on failure only.
func TestNoHookLogOneLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := "proxies: ['198.51.100.1:3128']\nhookLog: ''\nstateDir: " + filepath.Join(dir, "state") + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errb := runCLI(t, state, "--config", cfg, "create")
	if code != 1 || strings.Count(strings.TrimSpace(errb), "\n") != 0 {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line", code, errb)
	}
	if code, _, errb := runCLI(t, strings.Replace(state, "creating", "stopped", 1), "--config", cfg, "poststop"); code != 0 || errb != "" {
		t.Errorf("a poststop with nothing to do: exit %d, stderr %q; want silence", code, errb)
	}
}

// A pid that is gone cannot be fenced: exit 1 under failure: closed, and
// a warning with exit 0 under failure: open.
func TestGonePid(t *testing.T) {
	closed, logPath := writeConfig(t, "proxies: ['198.51.100.1:3128']")
	code, _, errb := runCLI(t, state, "--config", closed, "create")
	if code != 1 || !strings.Contains(errb, "999999999") {
		t.Errorf("closed: exit %d, stderr %q", code, errb)
	}
	m := lastLogLine(t, logPath)
	for _, k := range []string{"container", "stage", "mode", "duration_ms", "error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("the failure's log line lacks %q: %v", k, m)
		}
	}
	open, _ := writeConfig(t, "proxies: ['198.51.100.1:3128']\nfailure: open")
	code, _, errb = runCLI(t, state, "--config", open, "create")
	if code != 0 || !strings.Contains(errb, "UNFENCED") {
		t.Errorf("open: exit %d, stderr %q", code, errb)
	}
}

// `hook` with a broken config names the stage the state called for, not
// "hook": the runtime's user and the log see which stage failed.
func TestHookConfigErrorNamesStage(t *testing.T) {
	bad, _ := writeConfig(t, "proxies: ['198.51.100.1:3128']\nbogus: 1")
	for status, stage := range map[string]string{"creating": "create", "stopped": "poststop"} {
		code, _, errb := runCLI(t, strings.Replace(state, "creating", status, 1), "--config", bad, "hook")
		if code != 2 || !strings.HasPrefix(errb, "bypass-hook "+stage+" cli-test: config "+bad) {
			t.Errorf("status %s: exit %d, stderr %q; want the %s stage named", status, code, errb, stage)
		}
	}
}
