// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The hook log is opened as root may safely open it (issue 10, hole 4).
func TestOpenLogRefusesUnsafePaths(t *testing.T) {
	const before = "the victim's content\n"
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, dir string) (path string, victim string)
		errHas string // "" when the log opens
	}{
		{"missing directories are made 0700", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "a", "b", "hook.log"), ""
		}, ""},
		{"an existing regular file is appended to", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hook.log")
			writeFile(t, p, before, 0o640)
			return p, p
		}, ""},
		{"a symlink is not followed", func(t *testing.T, dir string) (string, string) {
			victim := filepath.Join(t.TempDir(), "victim")
			writeFile(t, victim, before, 0o600)
			p := filepath.Join(dir, "hook.log")
			if err := os.Symlink(victim, p); err != nil {
				t.Fatal(err)
			}
			return p, victim
		}, "symlink"},
		{"a dangling symlink is not followed", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hook.log")
			if err := os.Symlink(filepath.Join(t.TempDir(), "created-through-the-link"), p); err != nil {
				t.Fatal(err)
			}
			return p, ""
		}, "symlink"},
		{"a directory others may write to", func(t *testing.T, dir string) (string, string) {
			open := filepath.Join(dir, "open")
			mkdir(t, open, os.ModeSticky|0o777)
			p := filepath.Join(open, "hook.log")
			writeFile(t, p, before, 0o640)
			return p, p
		}, "mode 1777"},
		{"a directory its group may write to", func(t *testing.T, dir string) (string, string) {
			open := filepath.Join(dir, "group")
			mkdir(t, open, 0o770)
			return filepath.Join(open, "hook.log"), ""
		}, "mode 0770"},
		{"a FIFO, which would block the hook", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hook.log")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p, ""
		}, "hook log"},
		{"a directory", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "hook.log")
			mkdir(t, p, 0o700)
			return p, ""
		}, "hook log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, victim := tc.setup(t, dir)
			var fallback strings.Builder
			log, closeLog, err := OpenLog(path, false, &fallback)
			log.Info("a line")
			closeLog()
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				data, _ := os.ReadFile(path)
				if !strings.Contains(string(data), `"msg":"a line"`) || fallback.Len() != 0 {
					t.Errorf("log file %q, fallback %q", data, fallback.String())
				}
				for d := filepath.Dir(path); d != dir; d = filepath.Dir(d) {
					if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
						t.Errorf("log directory %s: %v %v, want mode 0700", d, fi.Mode(), err)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want one naming %s and saying %q", err, path, tc.errHas)
			}
			if !strings.Contains(fallback.String(), `"msg":"a line"`) {
				t.Errorf("the refused log's lines did not go to the fallback: %q", fallback.String())
			}
			if victim != "" {
				if data, _ := os.ReadFile(victim); string(data) != before {
					t.Errorf("%s changed: %q", victim, data)
				}
			}
		})
	}
}

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	// Chmod, since Mkdir's mode passes through the umask.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
