// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wrapperPair makes a bypass-hook-runtime with a bypass-hook-oci beside it.
func wrapperPair(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"bypass-hook-runtime", "bypass-hook-oci"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "bypass-hook-runtime")
}

func TestInstallDockerRuntimeCLI(t *testing.T) {
	bin := wrapperPair(t)
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	daemon := filepath.Join(t.TempDir(), "daemon.json")
	os.WriteFile(daemon, []byte(`{"debug": true}`), 0o644)
	code, out, errb := runCLI(t, "", "install", "docker-runtime", "--binary", bin, "--config", cfgPath, "--daemon-json", daemon, "--default")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{"systemctl reload docker", "default runtime", "BYPASS_HOOK_ENABLED=true", daemon + ".bypass-hook.bak"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var got struct {
		Debug    bool   `json:"debug"`
		Default  string `json:"default-runtime"`
		Runtimes map[string]struct {
			Path string   `json:"path"`
			Args []string `json:"runtimeArgs"`
		} `json:"runtimes"`
	}
	b, _ := os.ReadFile(daemon)
	json.Unmarshal(b, &got)
	rt := got.Runtimes["bypass-hook"]
	if !got.Debug || got.Default != "bypass-hook" || rt.Path != bin || len(rt.Args) != 1 || rt.Args[0] != "--bypass-hook-config="+cfgPath {
		t.Errorf("daemon.json: %s", b)
	}

	code, out, _ = runCLI(t, "", "install", "docker-runtime", "--remove", "--daemon-json", daemon)
	b, _ = os.ReadFile(daemon)
	if code != 0 || strings.Contains(string(b), "bypass-hook") || !strings.Contains(string(b), `"debug": true`) {
		t.Errorf("after --remove (exit %d, %s): %s", code, out, b)
	}

	// Refused before anything is written: a broken config, a wrapper
	// without its hook beside it.
	bad, _ := writeConfig(t, "proxies: [nonsense]\n")
	if code, _, errb := runCLI(t, "", "install", "docker-runtime", "--binary", bin, "--config", bad, "--daemon-json", daemon); code != 2 || !strings.Contains(errb, "proxies") {
		t.Errorf("broken config: exit %d %s", code, errb)
	}
	alone := filepath.Join(t.TempDir(), "bypass-hook-runtime")
	os.WriteFile(alone, nil, 0o755)
	if code, _, errb := runCLI(t, "", "install", "docker-runtime", "--binary", alone, "--config", cfgPath, "--daemon-json", daemon); code != 1 || !strings.Contains(errb, "bypass-hook-oci") {
		t.Errorf("no hook beside the wrapper: exit %d %s", code, errb)
	}
	if b2, _ := os.ReadFile(daemon); string(b2) != string(b) {
		t.Error("a refused install changed daemon.json")
	}
}

func TestInstallContainerdRuntimeCLI(t *testing.T) {
	bin := wrapperPair(t)
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\n")
	toml := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(toml, []byte("version = 2\ndisabled_plugins = [\"cri\"]\n"), 0o644)
	code, out, errb := runCLI(t, "", "install", "containerd-runtime", "--binary", bin, "--config", cfgPath, "--containerd-config", toml, "--runtime", "crun")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{"systemctl restart containerd", "handler: bypass-hook", `default_runtime_name = "bypass-hook" in [plugins."io.containerd.grpc.v1.cri".containerd]`, "Environment=BYPASS_HOOK_CONFIG=" + cfgPath, "Environment=BYPASS_HOOK_RUNTIME=crun"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errb, "disables the CRI plugin") {
		t.Errorf("no warning for a disabled CRI plugin: %q", errb)
	}
	if code, out, _ := runCLI(t, "", "install", "containerd-runtime", "--remove", "--containerd-config", toml); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("--remove: exit %d %s", code, out)
	}
	if b, _ := os.ReadFile(toml); string(b) != "version = 2\ndisabled_plugins = [\"cri\"]\n" {
		t.Errorf("after --remove: %q", b)
	}
	if code, _, _ := runCLI(t, "", "install", "containerd-runtime", "extra"); code != 2 {
		t.Errorf("an argument: exit %d, want 2", code)
	}
}
