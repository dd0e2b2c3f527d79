// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Where the thread cannot return from the container's namespace (forced
// here: the third setns, the way back, fails), Socket fails the call; it
// neither panics nor leaves the caller in the container's namespace.
//
// The case runs in a child of the test binary: should the discarded thread
// be the process's first, Go parks it for ever instead of ending it, and
// /proc/self/ns/net (the first thread's) would then name the test's
// namespace for every later test of this binary.
func TestSocketFailsWhereItCannotComeBack(t *testing.T) {
	if os.Getenv("BH_NO_WAY_BACK_CHILD") == "1" {
		socketWithNoWayBack(t)
		return
	}
	testnet.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSocketFailsWhereItCannotComeBack$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "BH_NO_WAY_BACK_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSocketFailsWhereItCannotComeBack") {
		t.Fatalf("the child that forces a failed way back: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

func socketWithNoWayBack(t *testing.T) {
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
