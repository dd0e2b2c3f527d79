// SPDX-License-Identifier: Apache-2.0

package records

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	if own := CgroupOf(os.Getpid()); own != nil {
		t.Errorf("CgroupOf(the caller) = %+v; want nil: a group the hook shares is not a container's own", own)
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
