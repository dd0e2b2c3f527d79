// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestContainerdRestart: pods outlive a containerd restart (their shims keep running), and
// CRI serves again afterwards; the NRI plugin reconnect test of issue 6 builds on this.
func TestContainerdRestart(t *testing.T) {
	e := NewEnv(t, Options{})
	pod, err := e.RunPod(PodConfig{Name: "survivor"})
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := pod.StartContainer(ContainerConfig{Name: "sleeper"})
	if err != nil {
		t.Fatal(err)
	}
	before := e.Containerd().Pid()
	if err := e.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
	if after := e.Containerd().Pid(); after == before {
		t.Fatalf("containerd pid %d did not change", after)
	}
	st, err := pod.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "SANDBOX_READY" {
		t.Errorf("after restart: pod %s", st.State)
	}
	if cs, err := e.InspectContainer(ctr); err != nil || cs.State != "CONTAINER_RUNNING" {
		t.Errorf("after restart: container %v %v", cs, err)
	}
	if r := ProbeProxy(st.NetNSPath, e.ProxyAddr4(), e.HTTPAddr4(), probeTimeout); r.Outcome != Success {
		t.Errorf("after restart: via proxy: %v", r)
	}
	pod2, err := e.RunPod(PodConfig{Name: "newcomer"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pod2.StartContainer(ContainerConfig{}); err != nil {
		t.Fatal(err)
	}
}

// TestNRIRequiredPlugins shows what containerd 2.2 does when its NRI default validator
// requires a plugin that is not connected: the pod sandbox starts, and every container of the
// pod is refused at CreateContainer, unless the pod carries the toleration annotation.
func TestNRIRequiredPlugins(t *testing.T) {
	const tolerate = "e2e.bypass-hook.io/tolerate-missing-nri"
	e := NewEnv(t, Options{
		NRIRequiredPlugins:           []string{"bypass-hook"},
		NRITolerateMissingAnnotation: tolerate,
		NoServers:                    true,
	})
	pod, err := e.RunPod(PodConfig{Name: "required"})
	if err != nil {
		t.Fatalf("the sandbox itself is not validated, want it running: %v", err)
	}
	_, err = pod.CreateContainer(ContainerConfig{Name: "refused"})
	if !refusedForMissing(err, "bypass-hook") {
		t.Fatalf("want the container refused for the missing plugin, got %v", err)
	}
	t.Logf("refused as expected: %v", err)
	if ids, _ := e.ContainerIDs(); len(ids) != 0 {
		t.Errorf("refused container left behind: %v", ids)
	}

	tol, err := e.RunPod(PodConfig{Name: "tolerating", Annotations: map[string]string{tolerate: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tol.StartContainer(ContainerConfig{Name: "tolerated"}); err != nil {
		t.Fatalf("a pod with %s=true should start: %v", tolerate, err)
	}
}

// TestNRIRequiredPluginsAnnotation: with the default validator enabled and no global list, a
// pod can require plugins for itself with the annotation required-plugins.noderesource.dev
// (a YAML list). A plain pod still starts.
func TestNRIRequiredPluginsAnnotation(t *testing.T) {
	e := NewEnv(t, Options{NRIDefaultValidator: true, NoServers: true})
	pod, err := e.RunPod(PodConfig{Name: "asks", Annotations: map[string]string{
		"required-plugins.noderesource.dev": `["bypass-hook"]`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pod.CreateContainer(ContainerConfig{Name: "refused"}); !refusedForMissing(err, "bypass-hook") {
		t.Fatalf("want the container refused, got %v", err)
	}
	plain, err := e.RunPod(PodConfig{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := plain.StartContainer(ContainerConfig{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("plain container started in %v", time.Since(start))
}

// refusedForMissing tells whether err is the NRI default validator's refusal for a missing
// required plugin (crictl quotes the message, so the quotes may come escaped).
func refusedForMissing(err error, plugin string) bool {
	if err == nil {
		return false
	}
	msg := strings.ReplaceAll(err.Error(), `\"`, `"`)
	return strings.Contains(msg, `required plugin "`+plugin+`" not present`)
}

// TestCleanupAfterContainerdCrash proves the harness's own cleanup: with containerd killed
// (SIGKILL) under a running pod, Close still removes the pod's processes, mounts, cgroups and
// the namespaces, and leaves the machine's ruleset as it was.
func TestCleanupAfterContainerdCrash(t *testing.T) {
	e := NewEnv(t, Options{NoServers: true})
	pod, err := e.RunPod(PodConfig{Name: "orphan"})
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := pod.StartContainer(ContainerConfig{Name: "sleeper"})
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
	if err := e.Containerd().Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := e.Containerd().Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	shims := e.shimPids()
	if len(shims) == 0 {
		t.Fatal("want the pod's shim to outlive containerd")
	}
	e.Close()
	if alive(cs.Pid) {
		t.Errorf("container process %d still alive", cs.Pid)
	}
	for _, pid := range shims {
		if alive(pid) {
			t.Errorf("shim %d left", pid)
		}
	}
	for _, id := range []string{pod.ID, pod.ID + "/debug"} {
		if _, err := os.Stat(ShimSocketPath(e.Socket, K8sNamespace, id)); err == nil {
			t.Errorf("shim socket for %s left", id)
		}
	}
	for _, p := range []string{st.NetNSPath, e.NetNS, e.Dir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists", p)
		}
	}
	if ms := e.MountsUnder(); len(ms) != 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if ds := e.CgroupDirs(); len(ds) != 0 {
		t.Errorf("cgroups left: %v", ds)
	}
	if rs, _ := filepath.Glob("/var/lib/cni/results/*" + pod.ID + "*"); len(rs) != 0 {
		t.Errorf("CNI results left: %v", rs)
	}
}

// alive tells whether pid runs (a zombie, waiting for PID 1 to reap it, does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
