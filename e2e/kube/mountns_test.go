// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// pinnedNS is a namespace the test holds open, so that its number stays its own. The kernel
// gives a freed namespace's number to the next namespace made anywhere on the machine: a
// number read from /proc/PID/ns/mnt names the holder's namespace only while it lives. A
// cleanup that killed "the processes in the node's mount namespace" by that number alone
// would, once the last of them had died, kill the processes of whatever namespace got the
// number next: another test's container. CI (make test) runs the e2e packages side by side,
// and e2e/k8s pods died so: their runc init or pause SIGKILLed while being started, or just
// after (TestNRIPluginReconnects once saw its pod's pause exit 137 4 ms after it started).
type pinnedNS struct {
	f        *os.File
	dev, ino uint64
}

// pinNS opens the namespace at path (/proc/PID/ns/mnt) and keeps it open until Close.
func pinNS(path string) (*pinnedNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pinning the namespace %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("pinning the namespace %s: %w", path, err)
	}
	return &pinnedNS{f: f, dev: st.Dev, ino: st.Ino}, nil
}

// is tells whether the namespace at path (/proc/PID/ns/mnt) is the pinned one.
func (p *pinnedNS) is(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Dev == p.dev && st.Ino == p.ino
}

// mountProcs are the processes whose mount namespace is the pinned one.
func (p *pinnedNS) mountProcs() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p.is(fmt.Sprintf("/proc/%d/ns/mnt", pid)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMountProcs SIGKILLs the processes whose mount namespace is the pinned one, each through
// a pidfd opened before its namespace is looked at again, so that a pid that ended and was
// given to another process since the scan is not signalled. It returns how many it found.
func (p *pinnedNS) killMountProcs() int {
	pids := p.mountProcs()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		if p.is(fmt.Sprintf("/proc/%d/ns/mnt", pid)) {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		unix.Close(fd)
	}
	return len(pids)
}

// Close lets the namespace go (it ends with its last process). After it, the number may
// belong to another namespace: look no more.
func (p *pinnedNS) Close() error { return p.f.Close() }

// TestCleanupSparesTheNextMountNamespace: the node's mount namespace ends at cleanup, as the
// processes in it are killed. The kernel gives its number to the next mount namespace made
// (another test's container); cleanup still sees in the node's namespace its own processes
// only, and kills none of the other's.
func TestCleanupSparesTheNextMountNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (it makes mount namespaces)")
	}
	unshare, err := testnet.Tool("unshare")
	if err != nil {
		t.Skipf("%v: apt-get install -y util-linux", err)
	}
	sleeper := func() *exec.Cmd {
		return exec.Command(unshare, "--mount", "--propagation", "private", "--", "sleep", "infinity")
	}
	c := &cluster{t: t}
	if err := c.holdMountNS(sleeper()); err != nil {
		t.Fatal(err)
	}
	defer c.mntNS.Close()
	node, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", c.holder.Process.Pid))
	if got := c.mntNS.mountProcs(); !slices.Equal(got, []int{c.holder.Process.Pid}) {
		t.Fatalf("processes in the node's mount namespace %s: %v, want the holder %d alone", node, got, c.holder.Process.Pid)
	}

	// The node's last process dies; then a container starts elsewhere.
	if n := c.mntNS.killMountProcs(); n != 1 {
		t.Fatalf("killed %d processes, want the holder alone", n)
	}
	_ = c.holder.Wait()
	other := sleeper()
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill() }() // if the test stops early; its Wait is below
	path := fmt.Sprintf("/proc/%d/ns/mnt", other.Process.Pid)
	var ns string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", other.Process.Pid))
		if ns, _ = os.Readlink(path); strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other mount namespace's sleep did not start")
		}
	}
	t.Logf("the node's mount namespace was %s; the next one made is %s", node, ns)

	if got := c.mntNS.mountProcs(); len(got) != 0 {
		t.Errorf("processes in the node's mount namespace after its last one died: %v (the other namespace's sleep is %d)", got, other.Process.Pid)
	}
	// A SIGKILL sent is queued before killMountProcs returns: the sleep then dies of it,
	// whatever comes after; else it dies of the SIGTERM sent here.
	c.mntNS.killMountProcs()
	_ = other.Process.Signal(syscall.SIGTERM)
	_ = other.Wait()
	if ws, ok := other.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGTERM {
		t.Errorf("cleanup killed the sleep %d of the next mount namespace %s: it ended %v, want by the test's SIGTERM", other.Process.Pid, ns, other.ProcessState)
	}
}
