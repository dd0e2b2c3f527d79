// SPDX-License-Identifier: Apache-2.0

package netns_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testnet"
)

// InUse sees each thing that keeps a namespace sending: a process in it, and
// a socket made in it that a process elsewhere holds; a bind mount alone,
// or a netlink socket, is not a use.
func TestInUse(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "nsenter", "sleep")
	ns := testnet.NewNetns(t)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if why := netns.InUse(id); why != "" {
		t.Fatalf("a namespace only a bind mount holds is in use: %s", why)
	}

	start := func(files ...*os.File) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("sleep", "100")
		cmd.ExtraFiles = files
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	holding := func(domain, typ, proto int) *exec.Cmd {
		t.Helper()
		fd, err := netns.Socket(ns.Path, domain, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		return start(f)
	}

	// The monitor's kind of socket: netlink, which sends nothing out.
	nl := holding(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER)
	if why := netns.InUse(id); why != "" {
		t.Errorf("a netlink socket counts as a use: %s", why)
	}
	nl.Process.Kill()
	nl.Wait()

	// pid 1 of a workload made a TCP socket, then moved elsewhere.
	tcp := holding(unix.AF_INET, unix.SOCK_STREAM, 0)
	if why := netns.InUse(id); !strings.Contains(why, strconv.Itoa(tcp.Process.Pid)) || !strings.Contains(why, "socket") {
		t.Errorf("InUse = %q, want the socket that process %d holds", why, tcp.Process.Pid)
	}
	tcp.Process.Kill()
	tcp.Wait()

	// A process in the namespace.
	in := exec.Command("nsenter", "--net="+ns.Path, "sleep", "100")
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Process.Kill(); in.Wait() })
	for range 100 {
		if got, _ := netns.Peek(netns.PidPath(in.Process.Pid)); got == id {
			break
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	if why := netns.InUse(id); !strings.Contains(why, "runs in it") {
		t.Errorf("InUse = %q with a process in the namespace", why)
	}
	in.Process.Kill()
	in.Wait()
	if why := netns.InUse(id); why != "" {
		t.Errorf("InUse = %q once everything left", why)
	}
}
