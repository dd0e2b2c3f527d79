// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/cli"
)

// The hook binary takes the CLI's stage flags before or after the stage's
// name and exits as the contract says: 0 done or help, 2 usage or config
// error. It has the stages and nothing else. None of these cases fences
// anything (no proxies, or an error first).
func TestHookCommands(t *testing.T) {
	dir := t.TempDir()
	noProxies := filepath.Join(dir, "config.yaml")
	y := "stateDir: " + filepath.Join(dir, "state") + "\nhookLog: " + filepath.Join(dir, "hook.log") + "\n"
	if err := os.WriteFile(noProxies, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	state := `{"ociVersion":"1.0.2","id":"web","status":"creating","pid":1,"bundle":"/nonexistent"}`
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string // a substring
		stderr string // a substring
	}{
		{"version", []string{"version"}, "", 0, "bypass-hook-oci ", ""},
		{"--version", []string{"--version"}, "", 0, "bypass-hook-oci ", ""},
		{"-h", []string{"-h"}, "", 0, "poststop", ""},
		{"help create", []string{"help", "create"}, "", 0, "-config", ""},
		{"create -h", []string{"create", "-h"}, "", 0, "-config", ""},
		{"no command", nil, "", 2, "", "create"},
		{"not a hook command", []string{"install"}, "", 2, "", `unknown command "install"`},
		{"unknown flag", []string{"create", "--bogus"}, state, 2, "", "bogus"},
		{"stray argument", []string{"create", "extra"}, state, 2, "", "the OCI state comes on stdin"},
		{"missing config before", []string{"--config", missing, "create"}, state, 2, "", "config file " + missing + " does not exist"},
		{"missing config after", []string{"create", "--config", missing}, state, 2, "", "config file " + missing + " does not exist"},
		{"config that is a directory", []string{"create", "--config", dir}, state, 2, "", "config " + dir + ": cannot be read: is a directory"},
		{"bad state", []string{"--config", noProxies, "create"}, "{", 2, "", "bypass-hook-oci create"},
		{"no proxies: nothing to do", []string{"--debug", "create", "--config", noProxies}, state, 0, "", ""},
		{"poststop, nothing recorded", []string{"--config", noProxies, "poststop"}, state, 0, "", ""},
		{"hook picks the stage", []string{"hook", "--config=" + noProxies}, strings.Replace(state, "creating", "stopped", 1), 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := newApp().Main(tc.args, cli.IO{Stdin: strings.NewReader(tc.stdin), Stdout: &out, Stderr: &errb})
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					tc.args, code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}
