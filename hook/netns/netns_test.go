// SPDX-License-Identifier: Apache-2.0

package netns_test

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testnet"
)

// nsOf identifies the network namespace an open file (a socket, or a
// namespace file) is in or is.
func nsOf(t *testing.T, fd int) netns.ID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return netns.ID{Dev: st.Dev, Ino: st.Ino}
}

// A socket made by Socket is in the namespace asked for, and the thread
// that made it is back in the hook's own namespace afterwards: anything the
// goroutine does next must act on the host side, not in the container.
func TestSocketIsMadeInTheNamespace(t *testing.T) {
	ns := testnet.NewNetns(t)
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := netns.Stat("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := netns.Socket(ns.Path, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sockNs, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sockNs)
	if got := nsOf(t, sockNs); got != want {
		t.Errorf("the socket is in namespace %v, want %v", got, want)
	}
	if back, err := netns.Stat("/proc/thread-self/ns/net"); err != nil || back != own {
		t.Errorf("the thread is in namespace %v (%v) after Socket, want its own %v", back, err, own)
	}
	if _, err := netns.Socket("/nonexistent", unix.AF_INET, unix.SOCK_DGRAM, 0); err == nil {
		t.Error("a namespace path that does not exist must be an error")
	}
}
