package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func program() *Program {
	p := &Program{Name: "bypass-hook-oci", Version: "v1.2.3"}
	p.Commands = append(p.StageCommands(), p.VersionCommand())
	return p
}

// The hook binary takes the CLI's flags before or after the subcommand and
// exits as the contract says: 0 done or help, 2 usage or config error.
// None of these cases fences anything (no proxies, or an error first).
func TestRun(t *testing.T) {
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
		{"version", []string{"version"}, "", 0, "bypass-hook-oci v1.2.3", ""},
		{"--version", []string{"--version"}, "", 0, "bypass-hook-oci v1.2.3", ""},
		{"-h", []string{"-h"}, "", 0, "", "usage: bypass-hook-oci"},
		{"help", []string{"help"}, "", 0, "commands:", ""},
		{"help create", []string{"help", "create"}, "", 0, "-config", ""},
		{"create -h", []string{"create", "-h"}, "", 0, "", "-config"},
		{"no command", nil, "", 2, "", "usage:"},
		{"unknown command", []string{"nri"}, "", 2, "", `unknown command "nri"`},
		{"unknown flag", []string{"create", "--bogus"}, state, 2, "", "bogus"},
		{"stray argument", []string{"create", "extra"}, state, 2, "", "the OCI state comes on stdin"},
		{"missing config before", []string{"--config", missing, "create"}, state, 2, "", "missing.yaml"},
		{"missing config after", []string{"create", "--config", missing}, state, 2, "", "missing.yaml"},
		{"bad state", []string{"--config", noProxies, "create"}, "{", 2, "", "bypass-hook-oci create"},
		{"no proxies: nothing to do", []string{"create", "--config", noProxies, "--debug"}, state, 0, "", ""},
		{"poststop, nothing recorded", []string{"--config", noProxies, "poststop"}, state, 0, "", ""},
		{"hook picks the stage", []string{"--config", noProxies, "hook"}, strings.Replace(state, "creating", "stopped", 1), 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := program().Run(tc.args, strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					tc.args, code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// The stages never write to stdout: a runtime may not read it.
func TestStageWritesNoStdout(t *testing.T) {
	var errb strings.Builder
	out := &failWriter{t}
	program().Run([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml"), "create"}, strings.NewReader("{}"), out, &errb)
}

type failWriter struct{ t *testing.T }

func (w *failWriter) Write(p []byte) (int, error) {
	w.t.Errorf("a stage wrote to stdout: %q", p)
	return len(p), nil
}

var _ io.Writer = (*failWriter)(nil)
