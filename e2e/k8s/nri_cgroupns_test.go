// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// TestNRIPluginInACgroupNamespace runs the plugin as its DaemonSet's pod runs on a cgroup v2
// node: in a cgroup namespace of its own, rooted at a group of its own, with a cgroup2 mount
// of its own at /sys/fs/cgroup, and a mount namespace that the node's new mounts reach
// (HostToContainer, as /var/run/netns is mounted). Every container, fenced late by the
// plugin itself or at create by the hook it injected (which runc runs on the node), must have
// its owner's cgroup recorded as the host names it: prune, joins and the monitor keep a fence
// while that group holds a process. A plugin that read its own view recorded no group for
// its late fences (CgroupOf before 70d93b6: the test fails so). Before 65385f3 it came to
// read its own view where the thread that read the host's was its first: Go parked that one
// in the host's cgroup namespace, and /proc/PID/ns/cgroup named that. The plugin's first
// thread is mostly held for good by the runtime's signal goroutine (ensureSigM, which
// signal.NotifyContext starts, locked to the thread it lands on), so on this path the bug
// shows only in a start where that goroutine went to another thread (1 of 60 starts here);
// TestCgroupOfInACgroupNamespace shows it every time.
func TestNRIPluginInACgroupNamespace(t *testing.T) {
	testnet.RequireTools(t, "unshare")
	root := records.Cgroup2Root()
	if root == "" {
		testnet.SkipOrFail(t, "no cgroup v2 hierarchy mounted on this host: a plugin in a cgroup namespace records no group")
	}
	// What a pod's container gets: a cgroup2 mount of its namespace's view.
	const mountOwn = `mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 99; exec "$@"`
	inNamespaces := []string{"unshare", "--cgroup", "--mount", "--propagation", "slave", "sh", "-c", mountOwn, "sh"}
	if out, err := exec.Command(inNamespaces[0], append(inNamespaces[1:], "true")...).CombinedOutput(); err != nil {
		testnet.SkipOrFail(t, "cannot mount a cgroup2 file system in a cgroup namespace of its own: %v: %s", err, out)
	}
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	// Started while no plugin is connected: two containers of one pod (the second joins the
	// first's fence) and one of another.
	late := []*podRun{
		startPod(t, e, PodConfig{Name: "cgns-late-0", Annotations: annotated}, "a", "b"),
		startPod(t, e, PodConfig{Name: "cgns-late-1", Annotations: annotated}, "a"),
	}
	for _, r := range late {
		requireUnfenced(t, e, h, r)
	}

	// The plugin's group, the root of its cgroup namespace; removed with the pods' at cleanup.
	group := filepath.Join(root, e.CgroupParent, "bypass-hook-nri")
	if err := os.MkdirAll(group, 0o755); err != nil {
		t.Fatal(err)
	}
	enter := `echo $$ >"$1/cgroup.procs" || exit 98; shift; exec "$@"`
	argv := append([]string{"sh", "-c", enter, "sh", group}, inNamespaces...)
	began := time.Now()
	plugin := startPluginArgv(t, e, append(argv, pluginArgv(e, h)...))
	for _, r := range late {
		waitRefused(t, r.Status.NetNSPath, e.HTTPAddr4(), began, 15*time.Second)
	}
	pods := late
	for i := range 5 {
		pods = append(pods, startPod(t, e, PodConfig{Name: fmt.Sprintf("cgns-%d", i), Annotations: annotated}, "a", "b"))
	}

	if in, err := inHostCgroupNs("/proc/self/ns/cgroup"); err != nil || !in {
		t.Fatalf("the test runs in a cgroup namespace of its own (%v): it cannot tell the host's view from the plugin's", err)
	}
	n := 0
	for _, r := range pods {
		rec := h.recordOf(t, netnsID(t, r.Status.NetNSPath))
		if rec == nil {
			t.Errorf("pod %s: no record of its namespace", r.Pod.Config.Name)
			continue
		}
		for _, id := range r.Ctrs {
			cs, err := e.InspectContainer(id)
			if err != nil {
				t.Fatal(err)
			}
			want := records.CgroupOf(cs.Pid)
			if want == nil {
				t.Fatalf("container %s (pid %d) is in no cgroup v2 group of its own as the host sees it (/proc/%d/cgroup): nothing to record", short(id), cs.Pid, cs.Pid)
			}
			n++
			i := slices.IndexFunc(rec.Owners, func(o records.Owner) bool { return o.ID == id })
			switch {
			case i < 0:
				t.Errorf("pod %s: the record does not name container %s as an owner", r.Pod.Config.Name, short(id))
			case rec.Owners[i].Cgroup == nil || *rec.Owners[i].Cgroup != *want:
				t.Errorf("pod %s, container %s: the owner's cgroup is %+v in the record, want %+v, the container's group as the host names it", r.Pod.Config.Name, short(id), rec.Owners[i].Cgroup, want)
			case !rec.Owners[i].GroupRuns():
				t.Errorf("pod %s, container %s: prune on the node finds the recorded group %+v empty", r.Pod.Config.Name, short(id), want)
			}
		}
	}
	t.Logf("checked the owner's cgroup of %d containers, %d of them fenced late by the plugin", n, len(late[0].Ctrs)+len(late[1].Ctrs))
	// Each thread of the plugin, its first too, in a cgroup namespace of its own: the ones that
	// read the host's view are gone.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/cgroup", plugin.Pid()))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("the plugin's threads (pid %d): %v", plugin.Pid(), err)
	}
	for _, ns := range tasks {
		// A thread that ended meanwhile is in none.
		if in, err := inHostCgroupNs(ns); in || (err != nil && !os.IsNotExist(err)) {
			t.Errorf("%s: a thread of the plugin is in the host's cgroup namespace after its late fences (%v)", ns, err)
		}
	}
}

// inHostCgroupNs reports whether the namespace file ns is the host's cgroup namespace,
// kthreadd's.
func inHostCgroupNs(ns string) (bool, error) {
	var a, host unix.Stat_t
	if err := unix.Stat(ns, &a); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/2/ns/cgroup", &host); err != nil {
		return false, err
	}
	return a.Dev == host.Dev && a.Ino == host.Ino, nil
}
