// SPDX-License-Identifier: Apache-2.0

package testrecord

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// GoneHandle is the file handle of a network namespace that is gone: what
// the record of a gone container carries while the kernel may have given
// its inode number to a newer namespace. It skips the test where the
// kernel gives namespaces no file handle (before Linux 6.18).
func GoneHandle(t *testing.T) string {
	t.Helper()
	gone, path := testnet.StartUnshared(t)
	ns, closeNs, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fh := netns.FileHandle(ns)
	closeNs()
	_ = gone.Process.Kill()
	_ = gone.Wait()
	if fh == "" {
		t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
	}
	return fh
}
