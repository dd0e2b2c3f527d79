// SPDX-License-Identifier: Apache-2.0

package records

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An owner's cgroup runs while any process is in it, whichever: the one it
// started with may be gone. A group made again under the path is another.
func TestOwnerGroupRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (makes a cgroup)")
	}
	root := Cgroup2Root()
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

// The NRI plugin fences late from its pod, in a cgroup namespace of its
// own (with a cgroup2 file system mounted for it), where a container's
// group shows as "/../..": the record still names the group as the host
// sees it, which is what prune on the node reads.
func TestCgroupOfInACgroupNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (makes cgroups and a cgroup namespace)")
	}
	root := Cgroup2Root()
	if root == "" {
		t.Skip("skipping: no cgroup v2 hierarchy mounted at " + fmt.Sprint(cgroup2Mounts))
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("skipping: no unshare")
	}
	group := func(name string) string {
		dir := filepath.Join(root, fmt.Sprintf("bh-records-test-%d-%s", os.Getpid(), name))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(dir) })
		return dir
	}
	ctr, plugin := group("ctr"), group("plugin")
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	if err := os.WriteFile(filepath.Join(ctr, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := CgroupOf(sleeper.Process.Pid)
	if want == nil {
		t.Fatal("CgroupOf from the host's cgroup namespace gave no group")
	}
	dir, err := os.Open(plugin)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command("unshare", "--cgroup", "--mount", "--propagation", "private", "sh", "-c",
		`umount -l "$1" && mount -t cgroup2 cgroup2 "$1" || exit 99; exec "$2" -test.run '^TestCgroupOfHelper$'`, "sh", root, os.Args[0])
	cmd.Env = append(os.Environ(), "BH_CGROUPOF_PID="+strconv.Itoa(sleeper.Process.Pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 99 {
		t.Skipf("skipping: cannot mount a cgroup2 file system in a cgroup namespace of its own: %s", out)
	}
	if err != nil {
		t.Fatalf("the helper in a cgroup namespace of its own: %v\n%s", err, out)
	}
	_, line, _ := strings.Cut(string(out), "cgroup=")
	line, _, _ = strings.Cut(line, "\n")
	var got *Cgroup
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("the helper's output: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "group runs: true") {
		t.Errorf("GroupRuns in a cgroup namespace of its own: the sleeper's group looks empty\n%s", out)
	}
	if !strings.Contains(string(out), "stayed in its own cgroup namespace") {
		t.Errorf("reading the host's view moved the process's first thread into the host's cgroup namespace:\n%s", out)
	}
	if got == nil || *got != *want {
		t.Errorf("CgroupOf in a cgroup namespace of its own = %+v; want %+v, as the host names it\n%s", got, want, out)
	}
}

// TestCgroupOfHelper prints CgroupOf of $BH_CGROUPOF_PID for
// TestCgroupOfInACgroupNamespace.
func TestCgroupOfHelper(t *testing.T) {
	pid, err := strconv.Atoi(os.Getenv("BH_CGROUPOF_PID"))
	if err != nil {
		t.Skip("a helper of TestCgroupOfInACgroupNamespace")
	}
	cg := CgroupOf(pid)
	b, _ := json.Marshal(cg)
	fmt.Printf("cgroup=%s\n", b)
	// The recorded path is the host's name: GroupRuns finds it from here.
	fmt.Printf("group runs: %v\n", Owner{Cgroup: cg}.GroupRuns())
	// The host view is read from a thread that joins the host's cgroup
	// namespace: however often, the process stays in its own, as prune's
	// refusal (InHostCgroupNamespace) reads it from /proc/self.
	for i := 0; i < 200; i++ {
		CgroupOf(pid)
		if in, err := InHostCgroupNamespace(); in || err != nil {
			fmt.Printf("after %d reads, in the host's cgroup namespace: %v, %v\n", i+1, in, err)
			return
		}
	}
	fmt.Println("stayed in its own cgroup namespace")
}
