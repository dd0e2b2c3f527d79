// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

func TestStaleReason(t *testing.T) {
	ns := netns.ID{Dev: 4, Ino: 4026532000}
	other := netns.ID{Dev: 4, Ino: 4026532999}
	for _, tc := range []struct {
		name  string
		owner Owner
		proc  Process
		want  string // "" alive, else a part of the reason
	}{
		{"running, start recorded", Owner{Pid: 100, Start: 5000}, Process{Exists: true, Start: 5000, Netns: ns}, ""},
		{"running, start from an older record", Owner{Pid: 100}, Process{Exists: true, Start: 5000, Netns: ns}, ""},
		{"no pid", Owner{Pid: 0}, Process{}, "no process"},
		{"negative pid", Owner{Pid: -1}, Process{}, "no process"},
		{"process gone", Owner{Pid: 100, Start: 5000}, Process{}, "process 100 is gone"},
		{"pid reused in the same namespace", Owner{Pid: 100, Start: 5000}, Process{Exists: true, Start: 9000, Netns: ns}, "another process"},
		{"pid reused elsewhere", Owner{Pid: 100, Start: 5000}, Process{Exists: true, Start: 9000, Netns: other}, "another process"},
		{"pid reused elsewhere, older record", Owner{Pid: 100}, Process{Exists: true, Start: 9000, Netns: other}, "another network namespace"},
		{"namespace not readable", Owner{Pid: 100, Start: 5000}, Process{Exists: true, Start: 5000}, "another network namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := StaleReason(tc.owner, tc.proc, ns)
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("StaleReason = %q, want %q", got, tc.want)
			}
		})
	}
}

// ReadProcess sees this process, and a process that has exited is gone.
func TestReadProcess(t *testing.T) {
	self := ReadProcess(os.Getpid())
	if !self.Exists || self.Start == 0 {
		t.Fatalf("this process: %+v", self)
	}
	if got := StartOf(os.Getpid()); got != self.Start {
		t.Errorf("StartOf = %d, ReadProcess = %d", got, self.Start)
	}
	if id, ok := netns.Peek(netns.PidPath(os.Getpid())); ok && self.Netns != id {
		t.Errorf("netns %v, want %v", self.Netns, id)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("skipping the exited process: %v", err)
	}
	if p := ReadProcess(cmd.Process.Pid); p.Exists {
		t.Errorf("an exited, reaped process: %+v", p)
	}
	if p := ReadProcess(0); p.Exists {
		t.Errorf("pid 0: %+v", p)
	}
}
