// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// install bundle decides as the hook will from the bundle's annotations and
// warns when the container would start unfenced, or be refused: under
// selection: annotated the reason would otherwise be only in the hook log.
func TestInstallBundleWarnsUnfenced(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bypass-hook")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	annotated, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nselection: annotated")
	all, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	noProxies, _ := writeConfig(t, "")
	for _, tc := range []struct {
		name        string
		cfg         string
		annotations string
		flags       []string
		stderr      string // "": no warning
	}{
		{"annotated, no annotation", annotated, `{}`, nil, `will start UNFENCED: the config (` + annotated + `) has selection: annotated`},
		{"annotated, opted in", annotated, `{"bypass-hook.io/enabled":"true"}`, nil, ""},
		{"annotated, --annotate", annotated, `{}`, []string{"--annotate"}, ""},
		{"annotated, opted out", annotated, `{"bypass-hook.io/enabled":"false"}`, nil, "will start UNFENCED"},
		{"all", all, `{}`, nil, ""},
		{"all, opted out", all, `{"bypass-hook.io/enabled":"false"}`, nil, "the hook will refuse this container"},
		{"no proxies", noProxies, `{}`, nil, "will start unfenced: no proxies configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := t.TempDir()
			spec := `{"ociVersion":"1.0.2","process":{"args":["sh"]},"root":{"path":"rootfs"},"annotations":` + tc.annotations + `}`
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"install", "bundle", bundle, "--binary", bin, "--config", tc.cfg}, tc.flags...)
			code, out, errb := runCLI(t, "", args...)
			if code != 0 || !strings.Contains(out, "added the hooks") {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errb)
			}
			if tc.stderr == "" && errb != "" || tc.stderr != "" && !strings.Contains(errb, tc.stderr) {
				t.Errorf("stderr %q, want %q", errb, tc.stderr)
			}
			if strings.Contains(errb, "UNFENCED") && !strings.Contains(errb, "bypass-hook install bundle --annotate "+bundle) {
				t.Errorf("the warning does not say how to opt in:\n%s", errb)
			}
		})
	}
	bundle := t.TempDir()
	if code, _, errb := runCLI(t, "", "install", "bundle", bundle, "--remove", "--annotate"); code != 2 || !strings.Contains(errb, "--annotate") {
		t.Errorf("--remove --annotate: exit %d: %s", code, errb)
	}
}
