// SPDX-License-Identifier: Apache-2.0

package netns_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/osthread"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
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

// In a user namespace that may enter a namespace of its own but not come
// back to the host's (rootless runtimes run hooks so), Socket refuses
// before it leaves: the caller goes on in its own namespace. The test runs
// itself again under `unshare --user --map-root-user`.
func TestSocketRefusesWhereItCannotReturn(t *testing.T) {
	if os.Getenv("BH_SOCKET_CHILD") == "1" {
		socketChild()
		return
	}
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "unshare")
	cmd := exec.Command("unshare", "--user", "--map-root-user", os.Args[0], "-test.run", "^TestSocketRefusesWhereItCannotReturn$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BH_SOCKET_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "refused; thread at home") {
		t.Errorf("under a user namespace:\n%s", out)
	}
}

// socketChild makes a namespace its user namespace owns, asks Socket for a
// socket there and says what became of it and of the calling thread.
func socketChild() {
	fds := make(chan int)
	go osthread.Run(func() bool {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			panic(err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		fds <- fd
		return false // the thread ends in the namespace it made
	})
	path := "/proc/self/fd/" + strconv.Itoa(<-fds)
	runtime.LockOSThread()
	home, _ := os.Readlink("/proc/thread-self/ns/net")
	fd, err := netns.Socket(path, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	now, _ := os.Readlink("/proc/thread-self/ns/net")
	switch {
	case err == nil:
		fmt.Printf("made fd %d; thread in %s, home %s\n", fd, now, home)
	case now != home:
		fmt.Printf("refused (%v); thread left home: in %s, home %s\n", err, now, home)
	default:
		fmt.Printf("refused; thread at home (%v)\n", err)
	}
}

// Reached sees a namespace through a process in it, and no longer once
// that process is gone; it agrees with Find.
func TestReached(t *testing.T) {
	cmd, path := testnet.StartUnshared(t)
	id, err := netns.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	own, _ := netns.Stat("/proc/self/ns/net")
	if r := netns.Reached(); !r[id] || !r[own] {
		t.Fatalf("Reached: the sleeper's namespace %v, our own %v; want both", r[id], r[own])
	}
	cmd.Process.Kill()
	cmd.Wait()
	if netns.Reached()[id] {
		t.Error("Reached still lists the namespace of a process that is gone")
	}
	if _, ok := netns.Find(id); ok {
		t.Error("Find still finds the namespace of a process that is gone")
	}
}
