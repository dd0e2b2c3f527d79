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
	"github.com/bypass-hook/bypass-hook/internal/osthread"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
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

	// A process whose main thread is elsewhere and one thread in the
	// namespace: /proc/PID/ns/net shows the main thread's only.
	helper := exec.Command(os.Args[0], "-test.run=^TestInUseThreadHelper$", "-test.count=1")
	helper.Env = append(os.Environ(), "BH_INUSE_THREAD="+ns.Path)
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	buf := make([]byte, 64)
	if n, _ := stdout.Read(buf); !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("the helper did not get a thread into the namespace: %q", buf[:n])
	}
	if got, _ := netns.Peek(netns.PidPath(helper.Process.Pid)); got == id {
		t.Fatal("the helper's main thread is in the namespace: the case is not made")
	}
	if why := netns.InUse(id); !strings.Contains(why, strconv.Itoa(helper.Process.Pid)) {
		t.Errorf("InUse = %q with one thread of process %d in the namespace", why, helper.Process.Pid)
	}
	helper.Process.Kill()
	helper.Wait()

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

// TestInUseThreadHelper is TestInUse's helper process: one thread joins
// the namespace, the main thread stays where it is.
func TestInUseThreadHelper(t *testing.T) {
	path := os.Getenv("BH_INUSE_THREAD")
	if path == "" {
		t.Skip("a helper of TestInUse")
	}
	ready := make(chan error)
	// A thread other than the first goes in and stays.
	go osthread.Run(func() bool {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
		}
		ready <- err
		select {}
	})
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// A socket made in the namespace and then found in no process's file
// table still sends through it once its holder takes it back: here it is
// in flight over a unix socket (SCM_RIGHTS) that a process elsewhere holds,
// the way a workload's pid 1 can park it before a prune and pick it up
// after. InUse keeps the namespace while the socket lives, and not after.
func TestInUseSocketInFlight(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "sleep")
	ns := testnet.NewNetns(t)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := netns.Socket(ns.Path, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(tcp), nil, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(tcp)
	unix.Close(pair[0])
	end := os.NewFile(uintptr(pair[1]), "unix")
	holder := exec.Command("sleep", "100")
	holder.ExtraFiles = []*os.File{end}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	end.Close()
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })

	if why := netns.InUse(id); !strings.Contains(why, "in flight") {
		t.Errorf("InUse = %q with a TCP socket of the namespace in flight over a unix socket process %d holds", why, holder.Process.Pid)
	}
	holder.Process.Kill()
	holder.Wait()
	why := "not checked"
	for range 100 { // the kernel frees the socket shortly after its holder
		if why = netns.InUse(id); why == "" {
			break
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	if why != "" {
		t.Errorf("InUse = %q once the socket in flight is gone", why)
	}
}

// The tally of sockets seen counts each socket once: a process that holds
// one harmless socket of the namespace under many descriptors (dup) must
// not make up for a TCP socket of it that is in flight.
func TestInUseDuplicatesDoNotHideASocket(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "sleep")
	ns := testnet.NewNetns(t)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := netns.Socket(ns.Path, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	harmless, err := netns.Socket(ns.Path, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(tcp), nil, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(tcp)
	unix.Close(pair[0])
	files := []*os.File{os.NewFile(uintptr(pair[1]), "unix")}
	h := os.NewFile(uintptr(harmless), "harmless")
	for range 4 {
		files = append(files, h) // the same socket under four descriptors
	}
	holder := exec.Command("sleep", "100")
	holder.ExtraFiles = files
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	h.Close()
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })

	if why := netns.InUse(id); !strings.Contains(why, "in flight") {
		t.Errorf("InUse = %q with a TCP socket of the namespace in flight and another socket of it held under four descriptors", why)
	}
}

// A thread may unshare its file table (unshare CLONE_FILES, no privilege
// needed) and keep a socket there once the process's own table has closed
// it: /proc/PID/fd shows the main thread's table only.
func TestInUseSocketInAThreadsOwnFileTable(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNetns(t)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestInUseThreadFilesHelper$", "-test.count=1")
	helper.Env = append(os.Environ(), "BH_INUSE_FILES="+ns.Path)
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	buf := make([]byte, 64)
	if n, _ := stdout.Read(buf); !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("the helper did not hide its socket in a thread's file table: %q", buf[:n])
	}
	if why := netns.InUse(id); !strings.Contains(why, "file table") {
		t.Errorf("InUse = %q with a TCP socket of the namespace in a thread's own file table of process %d", why, helper.Process.Pid)
	}
}

// TestInUseThreadFilesHelper is TestInUseSocketInAThreadsOwnFileTable's
// helper process: a TCP socket of the namespace stays in one thread's
// own file table only.
func TestInUseThreadFilesHelper(t *testing.T) {
	path := os.Getenv("BH_INUSE_FILES")
	if path == "" {
		t.Skip("a helper of TestInUseSocketInAThreadsOwnFileTable")
	}
	fd, err := netns.Socket(path, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unshared := make(chan error)
	// Not the first thread: its table is the one /proc/PID/fd shows.
	go osthread.Run(func() bool {
		unshared <- unix.Unshare(unix.CLONE_FILES)
		select {}
	})
	if err := <-unshared; err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // in the table every other thread shares
	os.Stdout.WriteString("ready\n")
	select {}
}
