// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/bypass-hook/bypass-hook/config"
)

func TestSelectLate(t *testing.T) {
	const bin = "/opt/bypass-hook/bin/bypass-hook"
	parse := func(y string) *config.Config {
		cfg, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	annotatedCfg := parse("proxies: [198.51.100.1:3128]\nselection: annotated\nnri:\n  excludeNamespaces: [kube-system]\n")
	allCfg := parse("proxies: [198.51.100.1:3128]\n")
	podNS := []*api.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: "/var/run/netns/cni-1"}}
	hostNS := []*api.LinuxNamespace{{Type: "pid"}, {Type: "mount"}}
	on := map[string]string{config.AnnEnabled: "true"}
	ours := &api.Hooks{
		CreateRuntime: []*api.Hook{{Path: bin, Args: []string{bin, "create"}}},
		Poststop:      []*api.Hook{{Path: bin, Args: []string{bin, "poststop"}}},
	}
	running := api.ContainerState_CONTAINER_RUNNING
	pods := []*api.PodSandbox{
		{Id: "p-on", Name: "agent", Namespace: "team", Annotations: on},
		{Id: "p-plain", Name: "web", Namespace: "team"},
		{Id: "p-sys", Name: "dns", Namespace: "kube-system", Annotations: on},
	}
	c := func(id, pod string, state api.ContainerState, pid uint32, ann map[string]string, nss []*api.LinuxNamespace, hooks *api.Hooks) *api.Container {
		return &api.Container{Id: id, PodSandboxId: pod, Name: id, State: state, Pid: pid, Annotations: ann,
			Linux: &api.LinuxContainer{Namespaces: nss}, Hooks: hooks}
	}

	for _, tc := range []struct {
		name   string
		cfg    *config.Config
		broken error
		ctr    *api.Container
		want   string // "" nothing to do, "fence", or a word of the reason it cannot be fenced
	}{
		{"annotated pod, started while the plugin was away", annotatedCfg, nil, c("a", "p-on", running, 42, nil, podNS, nil), "fence"},
		{"created, not started yet: its process exists", annotatedCfg, nil, c("a", "p-on", api.ContainerState_CONTAINER_CREATED, 42, nil, podNS, nil), "fence"},
		{"paused", annotatedCfg, nil, c("a", "p-on", api.ContainerState_CONTAINER_PAUSED, 42, nil, podNS, nil), "fence"},
		{"stopped", annotatedCfg, nil, c("a", "p-on", api.ContainerState_CONTAINER_STOPPED, 0, nil, podNS, nil), ""},
		{"hook injected at create", annotatedCfg, nil, c("a", "p-on", running, 42, nil, podNS, ours), ""},
		{"not annotated", annotatedCfg, nil, c("a", "p-plain", running, 42, nil, podNS, nil), ""},
		{"annotated on the container", annotatedCfg, nil, c("a", "p-plain", running, 42, on, podNS, nil), "fence"},
		{"excluded namespace", annotatedCfg, nil, c("a", "p-sys", running, 42, nil, podNS, nil), ""},
		{"selection all", allCfg, nil, c("a", "p-plain", running, 42, nil, podNS, nil), "fence"},
		{"no pid", annotatedCfg, nil, c("a", "p-on", running, 0, nil, podNS, nil), "no pid"},
		{"host network, asking for the fence", annotatedCfg, nil, c("a", "p-on", running, 42, nil, hostNS, nil), "host network"},
		{"host network, not selected", annotatedCfg, nil, c("a", "p-plain", running, 42, nil, hostNS, nil), ""},
		{"host network under selection all", allCfg, nil, c("a", "p-plain", running, 42, nil, hostNS, nil), "host network"},
		{"a widening annotation", annotatedCfg, nil, c("a", "p-on", running, 42, map[string]string{config.AnnotationPrefix + "proxies": "203.0.113.9:80"}, podNS, nil), "policy refuses"},
		{"a misspelt key", annotatedCfg, nil, c("a", "p-plain", running, 42, map[string]string{config.AnnotationPrefix + "enabeld": "true"}, podNS, nil), "policy refuses"},
		{"broken config", config.Default(), errors.New("proxies: bad"), c("a", "p-plain", running, 42, nil, podNS, nil), "cannot be loaded"},
		{"broken config, excluded by default", config.Default(), errors.New("proxies: bad"), c("a", "p-sys", running, 42, nil, podNS, nil), ""},
		{"broken config, hook injected", config.Default(), errors.New("proxies: bad"), c("a", "p-plain", running, 42, nil, podNS, ours), ""},
		{"unknown pod", annotatedCfg, nil, c("a", "gone", running, 42, on, podNS, nil), "fence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := selectLate(tc.cfg, tc.broken, pods, []*api.Container{tc.ctr}, bin)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("want nothing to do, got %+v", got[0])
			case tc.want == "":
			case len(got) != 1:
				t.Fatalf("want one container (%s), got %d", tc.want, len(got))
			case tc.want == "fence" && got[0].Cannot != "":
				t.Fatalf("want it fenced, got: cannot, %s", got[0].Cannot)
			case tc.want != "fence" && !strings.Contains(got[0].Cannot, tc.want):
				t.Fatalf("want it reported as unfenceable (%s), got %q", tc.want, got[0].Cannot)
			}
		})
	}
}

// The state the plugin fences from carries what the create hook would have
// read: the container's annotations (the CRI ones that name the pod) and
// the pod's bypass-hook.io ones.
func TestLateStateAnnotations(t *testing.T) {
	cfg, err := config.Parse([]byte("proxies: [198.51.100.1:3128]\nselection: annotated\n"))
	if err != nil {
		t.Fatal(err)
	}
	pod := &api.PodSandbox{Id: "p", Name: "agent", Namespace: "team", Annotations: map[string]string{config.AnnEnabled: "true", config.AnnotationPrefix + "proxies": "198.51.100.1:3128"}}
	ctr := &api.Container{Id: "c1", PodSandboxId: "p", Name: "app", State: api.ContainerState_CONTAINER_RUNNING, Pid: 1 << 30,
		Annotations: map[string]string{"io.kubernetes.cri.sandbox-name": "agent", "io.kubernetes.cri.sandbox-namespace": "team", "io.kubernetes.cri.container-name": "app"},
		Linux:       &api.LinuxContainer{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/var/run/netns/x"}}}}
	items := selectLate(cfg, nil, []*api.PodSandbox{pod}, []*api.Container{ctr}, "/bin/bypass-hook")
	if len(items) != 1 || items[0].Cannot != "" {
		t.Fatalf("got %+v", items)
	}
	st := lateState(items[0])
	if st.ID != "c1" || st.Pid != 1<<30 || st.Bundle != "" {
		t.Errorf("state %+v: want id c1, the pid NRI gives, no bundle (no such process)", st)
	}
	for k, v := range map[string]string{config.AnnEnabled: "true", config.AnnotationPrefix + "proxies": "198.51.100.1:3128", "io.kubernetes.cri.sandbox-name": "agent"} {
		if st.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, st.Annotations[k], v)
		}
	}
}

// A late fence goes into the pod's network namespace as the runtime reports
// it, never the container process's: a workload's pid 1 may have moved
// itself into a namespace of its own, leaving its workers in the pod's.
func TestLateNetns(t *testing.T) {
	podNet := func(path string) *api.PodSandbox {
		return &api.PodSandbox{Id: "p", Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "ipc"}, {Type: "network", Path: path}}}}
	}
	ctrNet := func(path string) *api.Container {
		return &api.Container{Id: "c", Pid: 42, Linux: &api.LinuxContainer{Namespaces: []*api.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: path}}}}
	}
	for _, tc := range []struct {
		name string
		pod  *api.PodSandbox
		ctr  *api.Container
		want string
	}{
		{"the pod's", podNet("/var/run/netns/cni-pod"), ctrNet("/var/run/netns/cni-ctr"), "/var/run/netns/cni-pod"},
		{"the container spec's where the pod reports none", &api.PodSandbox{Id: "p"}, ctrNet("/var/run/netns/cni-ctr"), "/var/run/netns/cni-ctr"},
		{"a pod network namespace without a path", podNet(""), ctrNet("/var/run/netns/cni-ctr"), "/var/run/netns/cni-ctr"},
		{"none: never the pid's", &api.PodSandbox{Id: "p"}, &api.Container{Id: "c", Pid: 42}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lateNetns(tc.pod, tc.ctr); got != tc.want {
				t.Errorf("lateNetns = %q, want %q", got, tc.want)
			}
		})
	}

	cfg, err := config.Parse([]byte("proxies: [198.51.100.1:3128]\n"))
	if err != nil {
		t.Fatal(err)
	}
	running := &api.Container{Id: "c", PodSandboxId: "p", State: api.ContainerState_CONTAINER_RUNNING, Pid: 42}
	items := selectLate(cfg, nil, []*api.PodSandbox{{Id: "p"}}, []*api.Container{running}, "/bin/bypass-hook")
	if len(items) != 1 || !strings.Contains(items[0].Cannot, "no network namespace") {
		t.Errorf("a container whose pod reports no network namespace: %+v; want it reported unfenceable", items)
	}
	items = selectLate(cfg, nil, []*api.PodSandbox{podNet("/var/run/netns/cni-pod")}, []*api.Container{running}, "/bin/bypass-hook")
	if len(items) != 1 || items[0].Cannot != "" || items[0].Netns != "/var/run/netns/cni-pod" {
		t.Errorf("got %+v; want it fenced in /var/run/netns/cni-pod", items)
	}
}
