// SPDX-License-Identifier: Apache-2.0

package wrapper

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

// fakeRuntime makes an executable file in a new directory.
func fakeRuntime(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindRuntime(t *testing.T) {
	rt := fakeRuntime(t, "runc")
	self := fakeRuntime(t, "bypass-hook-runtime")
	notExec := filepath.Join(t.TempDir(), "runc")
	os.WriteFile(notExec, nil, 0o644)
	for _, tc := range []struct {
		name, arg, want, errHas string
	}{
		{name: "absolute path", arg: rt, want: rt},
		{name: "relative path refused", arg: "bin/runc", errHas: "absolute path"},
		{name: "itself refused", arg: self, errHas: "itself"},
		{name: "not executable", arg: notExec, errHas: "not an executable"},
		{name: "missing", arg: "/nonexistent/runc", errHas: "no such file"},
		{name: "unknown name", arg: "no-such-runtime-here", errHas: "not found in /usr/local/sbin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindRuntime(tc.arg, self)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("want an error with %q, got %q %v", tc.errHas, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
	// A name is looked for in the system's directories, never in PATH.
	t.Setenv("PATH", filepath.Dir(rt))
	if got, err := FindRuntime("sh", ""); err != nil || !filepath.IsAbs(got) || filepath.Dir(got) == filepath.Dir(rt) {
		t.Errorf("FindRuntime(sh) = %q %v, want it from the system's directories", got, err)
	}
	if _, err := FindRuntime("bypass-hook-runtime", ""); err == nil {
		t.Error("a name found only in PATH was taken")
	}
}

func TestRun(t *testing.T) {
	rt := fakeRuntime(t, "runc")
	dir := t.TempDir()
	self := filepath.Join(dir, "bypass-hook-runtime")
	os.WriteFile(self, nil, 0o755)
	hookBin := filepath.Join(dir, HookName)
	os.WriteFile(hookBin, nil, 0o755)
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgFile, []byte(proxies+"selection: annotated\n"), 0o600)

	t.Run("create of an opted-in container", func(t *testing.T) {
		b := bundle(t, []string{"BYPASS_HOOK_ENABLED=true"}, nil)
		runtimeArgs := []string{"--root", "/run/r", "create", "--bundle", b, "--pid-file", b + "/pid", "web"}
		plan, err := Run(append([]string{FlagConfig, cfgFile, FlagRuntime + "=" + rt}, runtimeArgs...), self)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Runtime != rt || !slices.Equal(plan.Argv, append([]string{rt}, runtimeArgs...)) {
			t.Errorf("plan %q %q, want %s with the runtime's arguments untouched", plan.Runtime, plan.Argv, rt)
		}
		w, _ := readWritten(t, b)
		c := w.Hooks["createRuntime"]
		if len(c) != 1 || c[0].Path != hookBin || !slices.Contains(c[0].Args, cfgFile) {
			t.Errorf("createRuntime %+v, want %s with --config %s (the wrapper's own config)", c, hookBin, cfgFile)
		}
	})
	// Each way the runtime is told to make a container from a bundle: the
	// hooks must be in the spec file the runtime reads, or the container
	// starts unfenced.
	t.Run("every create of a bundle gets the hooks", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args func(b string) []string
			spec string // the file the runtime reads, in the bundle
		}{
			{"flags after the id, as runc and crun take them", func(b string) []string { return []string{"create", "web", "--bundle", b} }, "config.json"},
			{"bundle twice", func(b string) []string { return []string{"create", "--bundle", t.TempDir(), "--bundle", b, "web"} }, "config.json"},
			{"run --detach", func(b string) []string { return []string{"run", "--detach", "-b", b, "web"} }, "config.json"},
			{"restore from a checkpoint", func(b string) []string {
				return []string{"--root", "/r", "restore", "--image-path", "/ckpt", "--bundle", b, "web"}
			}, "config.json"},
			{"crun's --config", func(b string) []string {
				return []string{"create", "-b", t.TempDir(), "--config", filepath.Join(b, "config.json"), "web"}
			}, "config.json"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := bundle(t, []string{"BYPASS_HOOK_ENABLED=true"}, nil)
				if _, err := Run(append([]string{FlagConfig, cfgFile, FlagRuntime, rt}, tc.args(b)...), self); err != nil {
					t.Fatal(err)
				}
				if w, raw := readWritten(t, b); len(w.Hooks["createRuntime"]) != 1 {
					t.Errorf("the spec the runtime reads has no hook: %s", raw)
				}
			})
		}
	})
	t.Run("a relative crun --config is refused", func(t *testing.T) {
		b := bundle(t, []string{"BYPASS_HOOK_ENABLED=true"}, nil)
		_, err := Run([]string{FlagConfig, cfgFile, FlagRuntime, rt, "create", "-b", b, "-f", "other.json", "web"}, self)
		if err == nil || !strings.Contains(err.Error(), "absolute path") {
			t.Errorf("got %v, want a refusal that asks for an absolute path", err)
		}
	})
	t.Run("the container's BYPASS_HOOK_CONFIG is not the wrapper's", func(t *testing.T) {
		b := bundle(t, []string{"BYPASS_HOOK_CONFIG=/tmp/open.yaml"}, nil)
		log := filepath.Join(t.TempDir(), "log.json")
		_, err := Run([]string{FlagConfig, cfgFile, FlagRuntime, rt, "--log", log, "--log-format", "json", "create", "-b", b, "web"}, self)
		if err == nil || ExitCode(err) != 1 {
			t.Fatalf("want a refusal, got %v", err)
		}
		got, _ := os.ReadFile(log)
		if !strings.Contains(string(got), `"level":"error"`) || !strings.Contains(string(got), "BYPASS_HOOK_CONFIG") {
			t.Errorf("the runtime log, where the engine reads the error from, has %q", got)
		}
	})
	t.Run("other commands pass straight through", func(t *testing.T) {
		// No config is read for them: a broken config must not stop a
		// container from being deleted.
		t.Setenv(config.EnvVar, "/nonexistent.yaml")
		t.Setenv(EnvRuntime, rt)
		for _, args := range [][]string{{"start", "web"}, {"--root", "/r", "delete", "--force", "web"}, {"--version"}, {"state", "web"}} {
			plan, err := Run(args, self)
			if err != nil || !slices.Equal(plan.Argv[1:], args) {
				t.Errorf("%q: plan %q %v", args, plan.Argv, err)
			}
		}
		b := bundle(t, nil, nil)
		if _, err := Run([]string{"create", "-b", b, "web"}, self); err == nil || ExitCode(err) != 2 {
			t.Errorf("create with a config that is missing: %v (exit %d), want a config error, exit 2", err, ExitCode(err))
		}
	})
	t.Run("a missing hook binary fails before the runtime", func(t *testing.T) {
		b := bundle(t, []string{"BYPASS_HOOK_ENABLED=true"}, nil)
		if _, err := Run([]string{FlagConfig, cfgFile, FlagRuntime, rt, FlagHook, "/nonexistent/bypass-hook-oci", "create", "-b", b, "web"}, self); err == nil || !strings.Contains(err.Error(), "missing") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if _, err := Run([]string{FlagConfig}, self); ExitCode(err) != 2 {
			t.Errorf("got %v", err)
		}
	})
}
