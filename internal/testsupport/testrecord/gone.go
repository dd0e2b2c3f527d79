// SPDX-License-Identifier: Apache-2.0

package testrecord

import (
	"os/exec"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Namespace is a network namespace of a process of its own (testnet.StartUnshared)
// as a record names it: its path, its number and its file handle. It skips the test
// where the kernel gives namespaces no file handle (before Linux 6.18).
type Namespace struct {
	Cmd    *exec.Cmd
	Path   string
	ID     netns.ID
	Handle string
}

// Unshared starts a process in a network namespace of its own and reads the namespace.
func Unshared(t *testing.T) Namespace {
	t.Helper()
	cmd, path := testnet.StartUnshared(t)
	ns, closeNs, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fh := netns.FileHandle(ns)
	closeNs()
	if fh == "" {
		t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
	}
	return Namespace{Cmd: cmd, Path: path, ID: ns.ID, Handle: fh}
}

// GoneHandle is the file handle of a network namespace that is gone: what
// the record of a gone container carries while the kernel may have given
// its inode number to a newer namespace.
func GoneHandle(t *testing.T) string {
	t.Helper()
	gone := Unshared(t)
	_ = gone.Cmd.Process.Kill()
	_ = gone.Cmd.Wait()
	return gone.Handle
}
