// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"

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
	// The same figure as a /proc library reads (linked into tests only).
	if p, err := procfs.NewProc(os.Getpid()); err == nil {
		if st, err := p.Stat(); err == nil && st.Starttime != self.Start {
			t.Errorf("start time %d, procfs says %d", self.Start, st.Starttime)
		}
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

func TestStartTime(t *testing.T) {
	const tail = " S 1 1 1 0 -1 4194560 4117 1530213 130 1006 12 34 5678 910 20 0 1 0 123456 171446272 2975 18446744073709551615"
	for _, tc := range []struct {
		name, stat string
		want       uint64
		bad        bool
	}{
		{"plain", "1 (systemd)" + tail, 123456, false},
		{"spaces and parentheses in the name", "4242 (a) (b) c)" + tail, 123456, false},
		{"a name that mimics fields", "7 (x 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 999)" + tail, 123456, false},
		{"no parentheses", "1 systemd S 1", 0, true},
		{"cut short", "1 (sh) S 1 1 1", 0, true},
		{"not a number", "1 (sh) S 1 1 1 0 -1 4 4 1 1 1 1 1 1 1 20 0 1 0 soon", 0, true},
	} {
		got, err := startTime([]byte(tc.stat))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: startTime = %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.bad)
		}
	}
}

// OwnerRuns: an owner's own process that still runs keeps its fence; a pid
// now another process's, a gone one, or a zombie (its pid namespace is
// empty by then) does not.
func TestOwnerRuns(t *testing.T) {
	self := os.Getpid()
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Skip("cannot start true:", err)
	}
	defer zombie.Wait()
	for range 200 { // until it has exited, unreaped
		if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(zombie.Process.Pid) + "/stat"); strings.Contains(string(stat), ") Z ") {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, tc := range []struct {
		name  string
		owner Owner
		runs  bool
	}{
		{"own process", Owner{ID: "a", Pid: self, Start: StartOf(self)}, true},
		{"pid reused", Owner{ID: "a", Pid: self, Start: StartOf(self) + 1}, false},
		{"start unknown", Owner{ID: "a", Pid: self}, false},
		{"zombie", Owner{ID: "a", Pid: zombie.Process.Pid, Start: StartOf(zombie.Process.Pid)}, false},
		{"no pid", Owner{ID: "a"}, false},
	} {
		why := OwnerRuns(&Record{Owners: []Owner{tc.owner}})
		if (why != "") != tc.runs {
			t.Errorf("%s: OwnerRuns = %q, want runs %v", tc.name, why, tc.runs)
		}
	}
}

// A create's look at records of namespaces that no path reaches deletes
// those whose owners are gone, and keeps one whose owner's first process
// still runs elsewhere: its pid 1 may have left workers in the namespace,
// held by threads or sockets that no path shows, and a container joining
// there later (with no record to name the first as an owner) would take
// the fence out with its poststop. On main the record went.
func TestDropGoneNamespacesKeepsOwnerThatRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (the state directory must be owned by root)")
	}
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	// Namespaces of inode numbers no namespace has: no path reaches them.
	away := &Record{Netns: netns.ID{Dev: 4, Ino: 1}, Owners: []Owner{{ID: "away", Pid: self, Start: StartOf(self)}}}
	gone := &Record{Netns: netns.ID{Dev: 4, Ino: 2}, Owners: []Owner{{ID: "gone", Pid: self, Start: StartOf(self) + 1}}}
	old := time.Now().Add(-time.Minute)
	for _, r := range []*Record{away, gone} {
		unlock, err := s.Lock(r.Netns.Key())
		if err != nil {
			t.Fatal(err)
		}
		err = s.Save(r)
		unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(s.path(r.Netns.Key(), ".json"), old, old); err != nil {
			t.Fatal(err)
		}
	}
	pruned := s.DropGoneNamespaces("")
	if !slices.Equal(pruned, []string{gone.Netns.Key()}) {
		t.Errorf("pruned %v; want only %s, whose owner's process is gone (%s's runs)", pruned, gone.Netns.Key(), away.Netns.Key())
	}
}
