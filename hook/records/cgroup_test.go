// SPDX-License-Identifier: Apache-2.0

package records

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An owner's cgroup runs while any process is in it, whichever: the one it
// started with may be gone. A group made again under the path is another.
func TestOwnerGroupRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (makes a cgroup)")
	}
	root := cgroup2Root()
	if root == "" {
		t.Skip("skipping: no cgroup v2 hierarchy mounted at " + fmt.Sprint(cgroup2Mounts))
	}
	dir := filepath.Join(root, fmt.Sprintf("bh-records-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first, worker := start(), start()
	cg := CgroupOf(first.Process.Pid)
	if cg == nil || cg.Path != "/"+filepath.Base(dir) {
		t.Fatalf("CgroupOf(%d) = %+v; want the group %s", first.Process.Pid, cg, dir)
	}
	// A group the hook shares (here: worker's) is recorded for a container
	// without a pid namespace of its own, the only guard it has, and left
	// out for one with a pid namespace of its own.
	if shared := cgroupOf(first.Process.Pid, worker.Process.Pid); shared == nil || shared.Path != cg.Path {
		t.Errorf("cgroupOf(%d) as a process of its group sees it = %+v; want the group %s: without a pid namespace of its own it is the container's only guard", first.Process.Pid, shared, dir)
	}
	if _, err := exec.LookPath("unshare"); err == nil {
		inner := exec.Command("unshare", "--pid", "--fork", "--kill-child", "sleep", "60")
		if err := inner.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inner.Process.Kill(); inner.Wait() })
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(inner.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		var child int
		for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", inner.Process.Pid, inner.Process.Pid))
			child, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		if child == 0 {
			t.Fatal("unshare --pid --fork started no child")
		}
		if got := cgroupOf(child, worker.Process.Pid); got != nil {
			t.Errorf("cgroupOf(%d), in a pid namespace of its own, as a process of its group sees it = %+v; want nil", child, got)
		}
		inner.Process.Kill()
		inner.Wait()
		// --kill-child: the child goes with unshare.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", child)); err != nil {
				break
			}
		}
	}
	o := Owner{ID: "c", Pid: first.Process.Pid, Start: StartOf(first.Process.Pid), Cgroup: cg}
	first.Process.Kill()
	first.Wait()
	if o.Runs() || !o.GroupRuns() || OwnerGroupRuns(&Record{Owners: []Owner{o}}) == "" {
		t.Errorf("first process gone, a worker left: Runs %v, GroupRuns %v; want false, true", o.Runs(), o.GroupRuns())
	}
	worker.Process.Kill()
	worker.Wait()
	for deadline := time.Now().Add(5 * time.Second); o.GroupRuns() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if o.GroupRuns() {
		t.Errorf("an empty group runs")
	}
	// A group of another id under the path: made again, not the owner's.
	start()
	if o2 := (Owner{Cgroup: &Cgroup{Path: cg.Path, ID: cg.ID + 1}}); o2.GroupRuns() {
		t.Errorf("a group of another id runs as the owner's")
	}
	if !o.GroupRuns() {
		t.Errorf("the group with a process again does not run")
	}
}
