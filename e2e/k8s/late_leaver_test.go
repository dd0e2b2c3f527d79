// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// TestNRILateFenceWhenPid1LeftThePod (issue 19, hole 2): a pod starts while no plugin is
// connected; its container's pid 1, uid 65534 with no capability, forks a worker and then
// moves itself into a user and network namespace of its own. When the plugin connects, the
// late fence must go into the pod's network namespace, where the worker runs, not into pid
// 1's private one: the worker's direct connection is then refused.
func TestNRILateFenceWhenPid1LeftThePod(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	pod, err := e.RunPod(PodConfig{Name: "late-leaver", Namespace: "team-a", Annotations: annotated})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.RemoveForce() })
	host, port, _ := strings.Cut(e.HTTPAddr4(), ":")
	// The worker says, every 300 ms, how its direct connection went.
	script := fmt.Sprintf(`(while :; do out=$(nc -w 2 %s %s </dev/null 2>&1 >/dev/null); echo "worker: exit $? $out"; sleep 0.3; done) &
exec unshare -Urn sleep 3600`, host, port)
	nobody := int64(65534)
	ctr, err := pod.StartContainer(ContainerConfig{Name: "app", Command: []string{"sh", "-c", script}, RunAsUser: &nobody, DropCaps: []string{"ALL"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := pod.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.InspectContainer(ctr)
	if err != nil {
		t.Fatal(err)
	}
	podNs := netnsID(t, st.NetNSPath)
	var own netns.ID
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if own, _ = netns.Peek(netns.PidPath(cs.Pid)); own != podNs && own != (netns.ID{}) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if own == podNs || own == (netns.ID{}) {
		logs, _ := e.Crictl("logs", ctr)
		t.Fatalf("pid 1 (%d) did not move into a namespace of its own (unprivileged user namespaces off?); logs:\n%s", cs.Pid, logs)
	}
	r := &podRun{Pod: pod, Status: st, Ctrs: []string{ctr}}
	requireUnfenced(t, e, h, r)
	t.Logf("pid 1 (host pid %d) moved to %v; the pod's namespace is %v", cs.Pid, own, podNs)

	began := time.Now()
	plugin := startPluginArgs(t, e, h, "--health-addr", healthAddr)
	waitRefused(t, st.NetNSPath, e.HTTPAddr4(), began, 15*time.Second)
	requireFenced(t, e, st.NetNSPath)
	if rec := h.recordOf(t, own); rec != nil {
		t.Errorf("a fence was recorded in pid 1's private namespace %v: %+v", own, rec)
	}
	rec := h.recordOf(t, podNs)
	if rec == nil || len(rec.Owners) != 1 || rec.Owners[0].ID != ctr {
		t.Fatalf("record of the pod's namespace: %+v, want the container as its owner\nplugin log:\n%s", rec, tail(plugin.Log(), 20))
	}

	// The worker, in the pod's namespace, sees its own connections refused now.
	fenced := time.Now()
	deadline = time.Now().Add(10 * time.Second)
	for {
		time.Sleep(time.Second)
		logs, _ := e.Crictl("logs", "--since", fenced.Format(time.RFC3339Nano), ctr)
		lines := strings.Split(strings.TrimSpace(logs), "\n")
		last := lines[len(lines)-1]
		if strings.Contains(last, "refused") {
			t.Logf("the worker after the late fence: %s", last)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's direct connections are not refused after the late fence; its last lines:\n%s", tail(logs, 5))
		}
	}
	r.remove(t, h, podNs)
}
