// SPDX-License-Identifier: Apache-2.0

package netns_test

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// A namespace that only a socket made in it holds still exists by its file
// handle, where no path reaches it (Find does not see it), and is known
// gone once the socket closes.
func TestExistsWhileOnlyASocketHoldsIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: making a network namespace needs root")
	}
	// A namespace of a process of its own, as a runtime makes one; the
	// socket is ours, made in it.
	child := exec.Command("unshare", "--net", "sleep", "3600")
	if err := child.Start(); err != nil {
		t.Skipf("skipping: unshare: %v", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	path := netns.PidPath(child.Process.Pid)
	own, _ := netns.Peek("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, ok := netns.Peek(path); ok && got != own {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not make a namespace")
		}
	}
	ns, closeNs, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fh := netns.FileHandle(ns)
	closeNs()
	if fh == "" {
		t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
	}
	socket, err := netns.Socket(path, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Close(socket) }()
	id := ns.ID
	if ok, known := netns.Exists(id, fh); !ok || !known {
		t.Errorf("held by its process and a socket: Exists = %v, %v; want true, true", ok, known)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	if _, found := netns.Find(id); found {
		t.Error("Find reached a namespace that only a socket holds: the test does not test")
	}
	if ok, known := netns.Exists(id, fh); !ok || !known {
		t.Errorf("held by a socket only: Exists = %v, %v; want true, true", ok, known)
	}
	if ok, known := netns.Exists(netns.ID{Dev: id.Dev, Ino: id.Ino + 1}, fh); ok || known {
		t.Errorf("the handle of another namespace: Exists = %v, %v; want false, false", ok, known)
	}
	unix.Close(socket)
	socket = -1
	// The socket lets go of its namespace after an RCU grace period.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ok, known := netns.Exists(id, fh)
		if !ok && known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after its last socket closed: Exists = %v, %v; want false, true", ok, known)
		}
	}
	for _, fh := range []string{"", "zz", "f1:", "f1"} {
		if ok, known := netns.Exists(id, fh); ok || known {
			t.Errorf("Exists(%q) = %v, %v; want false, false", fh, ok, known)
		}
	}
}
