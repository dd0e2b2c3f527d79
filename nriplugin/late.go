// SPDX-License-Identifier: Apache-2.0

package nriplugin

// Late fencing. NRI fails open: a container created while no plugin is
// connected starts without the hook. When the plugin connects, the runtime
// hands it every pod and container (Synchronize); the plugin fences then
// each running container that the config selects and that started without
// the hook, as the create hook would have, in the pod's network namespace
// as the runtime reports it: never through the container's pid, which the
// workload controls (its pid 1 may have moved itself into a namespace of
// its own, leaving a worker in the pod's). NRI
// cannot add a poststop hook to a container that exists, so the plugin
// runs the poststop stage itself when such a container stops.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
)

// lateItem is a container found at synchronization without the hook.
type lateItem struct {
	Pod *api.PodSandbox
	Ctr *api.Container
	// Annotations are those the create hook would have read in its state:
	// the container's own, with the pod's bypass-hook.io ones carried in.
	Annotations map[string]string
	// Netns is the path of the pod's network namespace, as the runtime
	// reports it: what the late fence goes into.
	Netns string
	// Cannot says why the container cannot be fenced; "" when it can.
	Cannot string
}

// selectLate picks, from what the runtime reports at synchronization, the
// running containers that the config selects and that started without the
// hook. Each comes back either to fence or with the reason it cannot be
// fenced: none is left out in silence. broken is the config's error while
// no good config was ever loaded.
func selectLate(cfg *config.Config, broken error, pods []*api.PodSandbox, ctrs []*api.Container, binary string) []lateItem {
	byID := map[string]*api.PodSandbox{}
	for _, p := range pods {
		byID[p.GetId()] = p
	}
	var out []lateItem
	for _, ctr := range ctrs {
		switch ctr.GetState() {
		case api.ContainerState_CONTAINER_CREATED, api.ContainerState_CONTAINER_RUNNING, api.ContainerState_CONTAINER_PAUSED:
		default:
			continue // stopped: nothing runs there to fence
		}
		pod := byID[ctr.GetPodSandboxId()]
		if pod == nil {
			pod = &api.PodSandbox{}
		}
		if item, ok := lateChoice(cfg, broken, pod, ctr, binary); ok {
			out = append(out, item)
		}
	}
	return out
}

// lateChoice decides for one running container; ok is false when there is
// nothing to do (not selected, or the hook was injected at its create).
func lateChoice(cfg *config.Config, broken error, pod *api.PodSandbox, ctr *api.Container, binary string) (lateItem, bool) {
	item := lateItem{Pod: pod, Ctr: ctr}
	if broken != nil {
		c := chooseBroken(cfg, broken, pod, ctr, binary)
		if !c.Selected || !c.AddCreate {
			return item, false
		}
		item.Cannot = "the config cannot be loaded: " + broken.Error()
		return item, true
	}
	if ns := pod.GetNamespace(); ns != "" && slices.Contains(cfg.NRI.ExcludeNamespaces, ns) {
		return item, false
	}
	eff := EffectiveAnnotations(pod, ctr)
	if hostNetwork(ctr) {
		if dec, err := cfg.Decide(eff); err == nil && !dec.Fence {
			return item, false
		}
		item.Cannot = "it is on the host network, which cannot be fenced"
		return item, true
	}
	c := Choose(cfg, pod, ctr, binary)
	switch {
	case !c.Selected, !c.AddCreate:
		return item, false // not selected, or the hook ran at its create
	case c.Refused != nil:
		item.Cannot = "the policy refuses it: " + c.Refused.Error()
		return item, true
	case ctr.GetPid() == 0:
		item.Cannot = "the runtime gives no pid for it"
		return item, true
	}
	if item.Netns = lateNetns(pod, ctr); item.Netns == "" {
		item.Cannot = "the runtime reports no network namespace path for its pod"
		return item, true
	}
	item.Annotations = map[string]string{}
	for k, v := range ctr.GetAnnotations() {
		item.Annotations[k] = v
	}
	for k, v := range c.Annotations {
		item.Annotations[k] = v
	}
	return item, true
}

// lateNetns is the path of the network namespace a late fence goes into:
// the pod sandbox's, as the runtime reports it, else the one the runtime
// put the container into (its spec's); "" when the runtime reports
// neither. Never /proc/PID/ns/net of the container's process: the
// workload may have moved its pid 1 elsewhere.
func lateNetns(pod *api.PodSandbox, ctr *api.Container) string {
	for _, nss := range [][]*api.LinuxNamespace{pod.GetLinux().GetNamespaces(), ctr.GetLinux().GetNamespaces()} {
		for _, ns := range nss {
			if ns.GetType() == "network" && ns.GetPath() != "" {
				return ns.GetPath()
			}
		}
	}
	return ""
}

// lateState is the OCI state the create hook would have read.
func lateState(item lateItem) *specs.State {
	pid := int(item.Ctr.GetPid())
	return &specs.State{
		Version:     specs.Version,
		ID:          item.Ctr.GetId(),
		Status:      specs.StateRunning,
		Pid:         pid,
		Bundle:      bundleOf(pid, item.Ctr.GetId()),
		Annotations: item.Annotations,
	}
}

// bundleOf finds a running container's bundle, which NRI does not give.
// containerd's shim is the parent of the container's process (it reaps
// it), and runs in the bundle of the pod's sandbox; the container's bundle
// is beside it, named by the container's id. "" when it is not found: the
// capabilities are then not checked (strict refuses), as for a hook that
// cannot read config.json.
func bundleOf(pid int, id string) string {
	ppid, err := parentOf(pid)
	if err != nil {
		return ""
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(ppid) + "/cwd")
	if err != nil {
		return ""
	}
	for _, dir := range []string{cwd, filepath.Join(filepath.Dir(cwd), id)} {
		if filepath.Base(dir) != id {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
			return dir
		}
	}
	return ""
}

// parentOf reads a process's parent from /proc/PID/stat.
func parentOf(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command may hold spaces and parentheses: the fields follow the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	return strconv.Atoi(f[1])
}

var _ = time.Now
