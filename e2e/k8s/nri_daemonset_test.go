// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/manifest"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	corev1 "k8s.io/api/core/v1"
)

const (
	manifestPath  = "../../install/kubernetes/bypass-hook.yaml"
	containerfile = "../../install/Containerfile"
	nriSocketDir  = "/var/run/nri" // the NRI socket directory the DaemonSet mounts
)

// TestNRIDaemonSet runs the pod of install/kubernetes/bypass-hook.yaml as a kubelet would:
// its init containers, then the plugin container, with the manifest's args, security
// contexts and volumes. The one change: the volumes' node paths move under the test's
// directories (and the NRI socket's to this containerd's), and the args with them. The image
// is the e2e busybox with the test's binary mounted where install/Containerfile puts it.
//
// It proves that the binary the init container installs is the hook the plugin injects and
// runc runs on the node, that the plugin reaches the NRI socket from its own pod (its own
// network namespace, every capability dropped, read-only root), also after a containerd
// restart (the socket's directory is mounted, not the socket), and that it fences an
// annotated pod.
func TestNRIDaemonSet(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	ds, cm, err := manifest.Kubernetes(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	entrypoint := imageEntrypoint(t)

	// The node: every hostPath of the manifest under nodeRoot, the socket's at containerd's.
	nodeRoot := t.TempDir()
	nodePath := func(p string) string {
		if p == nriSocketDir || strings.HasPrefix(p, nriSocketDir+"/") {
			return filepath.Dir(e.NRISocket) + strings.TrimPrefix(p, nriSocketDir)
		}
		return filepath.Join(nodeRoot, p)
	}
	spec := ds.Spec.Template.Spec
	volumes := map[string]corev1.Volume{}
	var hostPaths []string
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v.HostPath.Path)
			// Type Directory: a directory every node has (/run). DirectoryOrCreate ones the
			// kubelet makes as a container that mounts them starts (toCRI), after the init
			// steps before it.
			if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectory {
				if err := os.MkdirAll(nodePath(v.HostPath.Path), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// The operator's ConfigMap: the manifest's, with this node's proxies (h.Config).
	cfg, err := os.ReadFile(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cm.Data["config.yaml"]; !ok {
		t.Fatalf("the ConfigMap %s has no config.yaml", cm.Name)
	}
	cmDir := filepath.Join(t.TempDir(), "configmap")
	if err := os.MkdirAll(cmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cmDir, "config.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	// Node paths in the args move with the volumes.
	moveArg := func(a string) string {
		for _, hp := range hostPaths {
			if a == hp || strings.HasPrefix(a, hp+"/") {
				return nodePath(a)
			}
		}
		return a
	}
	toCRI := func(c corev1.Container) ContainerConfig {
		t.Helper()
		cc := ContainerConfig{
			Name:    c.Name,
			Command: entrypoint,
			// The image's content (install/Containerfile): the CLI at the
			// entrypoint's path and the hook binary beside it.
			Mounts: []Mount{
				{HostPath: hookBin, ContainerPath: entrypoint[0], ReadOnly: true},
				{HostPath: testnet.OCIHook(hookBin), ContainerPath: filepath.Join(filepath.Dir(entrypoint[0]), "bypass-hook-oci"), ReadOnly: true},
			},
		}
		for _, a := range c.Args {
			cc.Args = append(cc.Args, moveArg(a))
		}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			switch {
			case !ok:
				t.Fatalf("%s mounts volume %s, which the pod does not have", c.Name, m.Name)
			case v.HostPath != nil:
				if m.MountPath != v.HostPath.Path {
					t.Fatalf("%s mounts node %s at %s: the hook runs on the node, so mount it at the node's path", c.Name, v.HostPath.Path, m.MountPath)
				}
				p := nodePath(v.HostPath.Path)
				if err := os.MkdirAll(p, 0o755); err != nil { // DirectoryOrCreate, as the kubelet does
					t.Fatal(err)
				}
				cc.Mounts = append(cc.Mounts, Mount{HostPath: p, ContainerPath: p, ReadOnly: m.ReadOnly})
			case v.ConfigMap != nil:
				cc.Mounts = append(cc.Mounts, Mount{HostPath: cmDir, ContainerPath: m.MountPath, ReadOnly: true})
			default:
				t.Fatalf("%s: volume %s is neither a host path nor the ConfigMap", c.Name, m.Name)
			}
		}
		if sc := c.SecurityContext; sc != nil {
			cc.RunAsUser = sc.RunAsUser
			cc.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
			cc.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
			if sc.Capabilities != nil {
				for _, c := range sc.Capabilities.Drop {
					cc.DropCaps = append(cc.DropCaps, string(c))
				}
				for _, c := range sc.Capabilities.Add {
					cc.AddCaps = append(cc.AddCaps, string(c))
				}
			}
			cc.Privileged = sc.Privileged != nil && *sc.Privileged
		}
		return cc
	}

	pod, err := e.RunPod(PodConfig{Name: ds.Name + "-node1", Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels,
		HostNetwork: spec.HostNetwork, HostPID: spec.HostPID, Privileged: slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool {
			return c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.RemoveForce() })
	for _, c := range spec.InitContainers {
		cc := toCRI(c)
		id, err := pod.StartContainer(cc)
		if err != nil {
			t.Fatalf("init container %s: %v", c.Name, err)
		}
		cs := waitExited(t, e, id, 30*time.Second)
		out, _ := e.Crictl("logs", id)
		if cs.ExitCode != 0 {
			t.Fatalf("init container %s (%s %s) exited %d: %s\n%s", c.Name, strings.Join(cc.Command, " "), strings.Join(cc.Args, " "), cs.ExitCode, cs.Message, out)
		}
		t.Logf("init container %s: %s %s: %s", c.Name, strings.Join(cc.Command, " "), strings.Join(cc.Args, " "), strings.TrimSpace(out))
	}
	since := e.ContainerdLogSize()
	var plugin ContainerConfig
	var pluginID string
	for _, c := range spec.Containers {
		cc := toCRI(c)
		id, err := pod.StartContainer(cc)
		if err != nil {
			t.Fatalf("container %s: %v", c.Name, err)
		}
		if c.Name == "nri-plugin" {
			plugin, pluginID = cc, id
		}
	}
	if plugin.Name == "" {
		t.Fatal("the DaemonSet has no nri-plugin container")
	}
	if err := e.WaitNRIPlugin(since, "bypass-hook", 15*time.Second); err != nil {
		out, _ := e.Crictl("logs", pluginID)
		t.Fatalf("%v\nplugin container's log:\n%s", err, tail(out, 20))
	}
	cs, err := e.InspectContainer(pluginID)
	if err != nil {
		t.Fatal(err)
	}
	status := procStatus(cs.Pid)
	t.Logf("plugin container: %s %s; its process: CapEff %s, NoNewPrivs %s", strings.Join(plugin.Command, " "),
		strings.Join(plugin.Args, " "), status["CapEff"], status["NoNewPrivs"])
	// Late fencing opens containers' /proc/PID/ns/net: the plugin sees the node's pids.
	if self, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", cs.Pid)); err != nil || self != mustReadlink(t, "/proc/self/ns/pid") {
		t.Errorf("the plugin's pid namespace %s (%v) is not the node's: the manifest sets hostPID", self, err)
	}
	// The hook the plugin injects is the one install-binary put on the node.
	binary := argAfter(plugin.Args, "--binary")
	if binary == "" || !strings.HasPrefix(binary, nodeRoot+"/") {
		t.Fatalf("the plugin's --binary %q is not a node path the DaemonSet installs to", binary)
	}
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("install-binary did not put the hook where the plugin says: %v", err)
	}
	if st, err := pod.Inspect(); err != nil || st.NetNSPath == "" {
		t.Fatalf("the plugin's pod has no network namespace of its own: %v %v", st, err)
	}

	fence := func(name string) {
		t.Helper()
		r := startPod(t, e, PodConfig{Name: name, Annotations: annotated}, "app")
		requireInjectedBin(t, e, r.Ctrs[0], binary, true)
		if countAppended(fenceRules(t, e, r.Status.NetNSPath)) == 0 {
			t.Fatal("no rules in the pod's namespace")
		}
		requireFenced(t, e, r.Status.NetNSPath)
		r.remove(t, h, netnsID(t, r.Status.NetNSPath))
	}
	fence("tenant")

	since = e.ContainerdLogSize()
	if err := e.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitNRIPlugin(since, "bypass-hook", 15*time.Second); err != nil {
		t.Fatalf("the plugin's pod did not reconnect after the restart: %v", err)
	}
	fence("tenant-after-restart")
}

// imageEntrypoint is the ENTRYPOINT of install/Containerfile, the DaemonSet's image.
func imageEntrypoint(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(containerfile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ENTRYPOINT\s+(\[.*\])\s*$`).FindSubmatch(data)
	var ep []string
	if m == nil || json.Unmarshal(m[1], &ep) != nil || len(ep) == 0 {
		t.Fatalf("%s has no ENTRYPOINT in JSON form", containerfile)
	}
	return ep
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// waitExited waits until the container has exited and returns its status.
func waitExited(t *testing.T, e *Env, id string, timeout time.Duration) *ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cs, err := e.InspectContainer(id)
		if err != nil {
			t.Fatal(err)
		}
		if cs.State == "CONTAINER_EXITED" {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %s after %v", short(id), cs.State, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procStatus is /proc/PID/status as a map.
func procStatus(pid int) map[string]string {
	m := map[string]string{}
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func mustReadlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
