// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"os"
	"runtime"
	"testing"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Where the thread cannot return from the container's namespace (forced
// here: the third setns, the way back, fails), Socket fails the call; it
// neither panics nor leaves the caller in the container's namespace.
func TestSocketFailsWhereItCannotComeBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: joining a network namespace needs root")
	}
	path := testnet.NewNetns(t).Path
	calls := 0
	setns = func(h vnetns.NsHandle) error {
		calls++
		if calls == 3 {
			return unix.EPERM
		}
		return vnetns.Set(h)
	}
	defer func() { setns = vnetns.Set }()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, _ := Peek("/proc/thread-self/ns/net")
	fd, err := Socket(path, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		t.Fatal("Socket succeeded although the way back failed")
	}
	t.Logf("Socket: %v", err)
	if now, _ := Peek("/proc/thread-self/ns/net"); now != own {
		t.Errorf("the caller's thread is in %v after Socket, want its own %v", now, own)
	}
	// The next call works again, on another thread.
	setns = vnetns.Set
	fd, err = Socket(path, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("Socket after a failed one: %v", err)
	}
	unix.Close(fd)
}
