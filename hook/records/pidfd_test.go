// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// Through its pidfd an owner is judged as Owner.Stale judges it: running
// while its process runs in the namespace, stale once it has ended (a
// zombie, then reaped), and a pid showing another start time is never
// taken for it (no pidfd kept). Pidfds of owners no longer looked at are
// closed.
func TestStaleThroughPidfd(t *testing.T) {
	own, ok := netns.Peek(netns.PidPath(os.Getpid()))
	if !ok {
		t.Skip("cannot read this process's network namespace")
	}
	if fd, err := unix.PidfdOpen(os.Getpid(), 0); err != nil {
		t.Skip("no pidfd_open:", err)
	} else {
		unix.Close(fd)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Skip("cannot start sleep:", err)
	}
	defer sleeper.Process.Kill()
	pid := sleeper.Process.Pid
	o := Owner{ID: "sleeper", Pid: pid, Start: StartOf(pid)}
	s := &Store{Dir: t.TempDir(), KeepPidfds: true}
	kept := func() int {
		s.pidfds.mu.Lock()
		defer s.pidfds.mu.Unlock()
		return len(s.pidfds.fds)
	}

	for range 2 {
		if why := s.stale(o, own); why != "" {
			t.Fatalf("running owner judged stale: %s", why)
		}
	}
	if kept() != 1 {
		t.Fatalf("%d pidfds kept for one running owner, want 1", kept())
	}
	if why := s.stale(o, netns.ID{Dev: 1, Ino: 1}); !strings.Contains(why, "another network namespace") {
		t.Errorf("owner in another namespace: %q", why)
	}
	reused := Owner{ID: "reused", Pid: pid, Start: o.Start + 1}
	if why := s.stale(reused, own); !strings.Contains(why, "another process") || kept() != 1 {
		t.Errorf("pid showing another start: %q with %d pidfds; want another process, no pidfd for it", why, kept())
	}

	// A zombie has ended: stale, and its pidfd closed.
	sleeper.Process.Signal(syscall.SIGKILL)
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if why := s.stale(o, own); why == "" || kept() != 0 {
		t.Errorf("zombie owner: %q with %d pidfds; want stale, none kept", why, kept())
	}
	sleeper.Wait()
	if why := s.stale(o, own); !strings.Contains(why, "gone") {
		t.Errorf("reaped owner: %q, want gone", why)
	}

	self := Owner{ID: "self", Pid: os.Getpid(), Start: StartOf(os.Getpid())}
	s.stale(self, own)
	s.closeUnseen() // self was looked at since the last call: kept
	if kept() != 1 {
		t.Fatalf("%d pidfds after closeUnseen, want self's", kept())
	}
	s.closeUnseen() // not looked at since
	if kept() != 0 {
		t.Errorf("%d pidfds kept of owners no longer looked at", kept())
	}
}
