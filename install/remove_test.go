// SPDX-License-Identifier: Apache-2.0

package install

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

func TestRemoveHooksDir(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "bypass-hook")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, removed, err := RemoveHooksDir("", dir); removed || err != nil {
		t.Fatalf("nothing there: removed %v, %v", removed, err)
	}
	path, err := WriteHooksDir("", dir, Registration{Binary: bin}, config.SelectAll)
	if err != nil {
		t.Fatal(err)
	}
	if got, removed, err := RemoveHooksDir("", dir); got != path || !removed || err != nil {
		t.Fatalf("removing %s: %s, removed %v, %v", path, got, removed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", path, err)
	}
	// Someone else's file of that name stays.
	other := `{"version":"1.0.0","hook":{"path":"/usr/bin/other"},"when":{"always":true},"stages":["prestart"]}`
	if err := os.WriteFile(path, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, removed, err := RemoveHooksDir("", dir); removed || err == nil {
		t.Fatalf("another hook's file: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("another hook's file was removed: %v", err)
	}
}
