// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A FIFO among the registration files (hooks.d, CDI) does not hang check.
func TestRegistrationFIFODoesNotHang(t *testing.T) {
	root := t.TempDir()
	hooksDir := filepath.Join(root, "hooks.d")
	cdiDir := filepath.Join(root, "cdi")
	for _, d := range []string{hooksDir, cdiDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(filepath.Join(d, "bypass-hook.json"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		registrationItems(Paths{HooksDirs: []string{hooksDir}}, nil)
		cdiItems(filepath.Join(cdiDir, "bypass-hook.json"), nil)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("check blocks on a FIFO registration file")
	}
}
