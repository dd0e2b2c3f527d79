// SPDX-License-Identifier: Apache-2.0

package nriplugin_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

const testBinary = "/opt/bypass-hook/bin/bypass-hook"

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("config %q: %v", y, err)
	}
	return cfg
}

// podNet is a container's namespaces in a pod with a network of its own.
var podNet = []*api.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: "/var/run/netns/cni-1"}, {Type: "mount"}}

// hostNet is a container's namespaces in a pod on the host network.
var hostNet = []*api.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "mount"}}

func ctr(name string, ann map[string]string, nss []*api.LinuxNamespace, hooks *api.Hooks) *api.Container {
	return &api.Container{Id: name + "-id", Name: name, Annotations: ann, Linux: &api.LinuxContainer{Namespaces: nss}, Hooks: hooks}
}

func pod(ns string, ann map[string]string) *api.PodSandbox {
	return &api.PodSandbox{Id: "pod-id", Name: "pod", Namespace: ns, Annotations: ann}
}

func TestChoose(t *testing.T) {
	const (
		annotated = "proxies: [198.51.100.1:3128, \"[2001:db8:1::1]:3128\"]\nselection: annotated\n"
		all       = "proxies: [198.51.100.1:3128]\n"
	)
	on := map[string]string{config.AnnEnabled: "true"}
	off := map[string]string{config.AnnEnabled: "false"}
	ours := &api.Hook{Path: "/usr/local/bin/bypass-hook", Args: []string{"bypass-hook", "hook"}}
	other := &api.Hook{Path: "/usr/bin/nvidia-container-runtime-hook"}

	for _, tc := range []struct {
		name      string
		cfg       string
		pod       *api.PodSandbox
		ctr       *api.Container
		selected  bool
		create    bool
		poststop  bool
		carry     map[string]string
		reasonHas string
	}{
		{name: "annotated: plain container", cfg: annotated, pod: pod("default", nil), ctr: ctr("app", nil, podNet, nil),
			reasonHas: "selection: annotated"},
		{name: "annotated: pod opts in", cfg: annotated, pod: pod("default", on), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: on, reasonHas: "selected"},
		{name: "annotated: container opts in", cfg: annotated, pod: pod("default", nil), ctr: ctr("app", on, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{}},
		{name: "annotated: pod true, container false: false wins", cfg: annotated, pod: pod("default", on), ctr: ctr("app", off, podNet, nil)},
		{name: "annotated: pod false, container true: false wins", cfg: annotated, pod: pod("default", off), ctr: ctr("app", on, podNet, nil)},
		{name: "annotated: NRI's per-container key", cfg: annotated,
			pod: pod("default", map[string]string{config.AnnEnabled + "/container.app": "true"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: on},
		{name: "annotated: per-container key of another container", cfg: annotated,
			pod: pod("default", map[string]string{config.AnnEnabled + "/container.sidecar": "true"}), ctr: ctr("app", nil, podNet, nil)},
		{name: "annotated: pod's mode and proxies are carried", cfg: annotated,
			pod: pod("default", map[string]string{config.AnnEnabled: "true", config.AnnMode: "enforce", config.AnnProxies: "198.51.100.1:3128"}),
			ctr: ctr("app", nil, podNet, nil), selected: true, create: true, poststop: true,
			carry: map[string]string{config.AnnEnabled: "true", config.AnnMode: "enforce", config.AnnProxies: "198.51.100.1:3128"}},
		{name: "annotated: the container's own mode wins over the pod's", cfg: annotated,
			pod: pod("default", map[string]string{config.AnnEnabled: "true", config.AnnProxies: "198.51.100.1:3128"}),
			ctr: ctr("app", map[string]string{config.AnnProxies: "[2001:db8:1::1]:3128"}, podNet, nil), selected: true, create: true, poststop: true,
			carry: on},
		{name: "annotated: a widening annotation still gets the hook, which refuses it", cfg: annotated,
			pod: pod("default", map[string]string{config.AnnEnabled: "true", config.AnnMode: "audit"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{config.AnnEnabled: "true", config.AnnMode: "audit"},
			reasonHas: "will refuse"},
		{name: "excluded namespace", cfg: annotated, pod: pod("kube-system", on), ctr: ctr("app", on, podNet, nil),
			reasonHas: "excluded"},
		{name: "all: plain container", cfg: all, pod: pod("default", nil), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{}},
		{name: "all: host network is skipped", cfg: all, pod: pod("default", nil), ctr: ctr("app", nil, hostNet, nil),
			reasonHas: "host network"},
		{name: "all: host network that asks for the fence gets the hook (which refuses)", cfg: all, pod: pod("default", on),
			ctr: ctr("app", nil, hostNet, nil), selected: true, create: true, poststop: true, carry: on},
		{name: "all: namespaces unknown is not taken for the host network", cfg: all, pod: pod("default", nil), ctr: ctr("app", nil, nil, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{}},
		{name: "all: opt-out is refused by the hook", cfg: all, pod: pod("default", off), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: off, reasonHas: "will refuse"},
		{name: "all: opt-out with trusted annotations", cfg: all + "trustAnnotations: true\n", pod: pod("default", off), ctr: ctr("app", nil, podNet, nil),
			reasonHas: "trusted"},
		{name: "no proxies: nothing to fence", cfg: "", pod: pod("default", nil), ctr: ctr("app", nil, podNet, nil),
			reasonHas: "no proxies"},
		{name: "registered already (hooks.d)", cfg: all, pod: pod("default", nil),
			ctr:      ctr("app", nil, podNet, &api.Hooks{CreateRuntime: []*api.Hook{other, ours}, Poststop: []*api.Hook{ours}}),
			selected: true, carry: map[string]string{}, reasonHas: "registered already"},
		{name: "registered at prestart without poststop", cfg: all, pod: pod("default", nil),
			ctr: ctr("app", nil, podNet, &api.Hooks{Prestart: []*api.Hook{ours}}), selected: true, poststop: true, carry: map[string]string{}},
		{name: "ours at startContainer does not count: it runs from the container's root", cfg: all, pod: pod("default", nil),
			ctr:      ctr("app", nil, podNet, &api.Hooks{StartContainer: []*api.Hook{ours}, CreateContainer: []*api.Hook{ours}, Poststop: []*api.Hook{ours}}),
			selected: true, create: true, carry: map[string]string{}},
		{name: "annotated: a misspelt key gets the hook, which refuses it", cfg: annotated,
			pod: pod("default", map[string]string{"bypass-hook.io/enable": "true"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{"bypass-hook.io/enable": "true"}, reasonHas: "will refuse"},
		{name: "all: a misspelt narrowing gets refused, not ignored", cfg: all,
			pod: pod("default", map[string]string{"bypass-hook.io/proxie": "198.51.100.1:3128"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{"bypass-hook.io/proxie": "198.51.100.1:3128"}, reasonHas: "will refuse"},
		// Keys in any case, and near misses of the prefix (issue 10, hole 5).
		{name: "annotated: pod opts in with capitals", cfg: annotated,
			pod: pod("default", map[string]string{"Bypass-Hook.IO/enabled": "true"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{"Bypass-Hook.IO/enabled": "true"}, reasonHas: "selected"},
		{name: "annotated: per-container key with capitals", cfg: annotated,
			pod: pod("default", map[string]string{"BYPASS-HOOK.IO/ENABLED/container.app": "true"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{"BYPASS-HOOK.IO/ENABLED": "true"}, reasonHas: "selected"},
		{name: "annotated: pod false with capitals, container true: false wins", cfg: annotated,
			pod: pod("default", map[string]string{"Bypass-Hook.io/enabled": "false"}), ctr: ctr("app", on, podNet, nil),
			selected: true, create: true, poststop: true, reasonHas: "will refuse",
			carry: map[string]string{"Bypass-Hook.io/enabled": "false"}},
		{name: "annotated: a near miss of the prefix gets the hook, which refuses it", cfg: annotated,
			pod: pod("default", map[string]string{"bypass-hook.io.enabled": "true"}), ctr: ctr("app", nil, podNet, nil),
			selected: true, create: true, poststop: true, carry: map[string]string{"bypass-hook.io.enabled": "true"}, reasonHas: "will refuse"},
		{name: "all: host network that asks with capitals gets the hook", cfg: all, pod: pod("default", map[string]string{"Bypass-Hook.io/enabled": "true"}),
			ctr: ctr("app", nil, hostNet, nil), selected: true, create: true, poststop: true, carry: map[string]string{"Bypass-Hook.io/enabled": "true"}},
		{name: "another hook is not ours", cfg: all, pod: pod("default", nil),
			ctr:      ctr("app", nil, podNet, &api.Hooks{CreateRuntime: []*api.Hook{other}, Poststop: []*api.Hook{other}}),
			selected: true, create: true, poststop: true, carry: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := nriplugin.Choose(mustConfig(t, tc.cfg), tc.pod, tc.ctr, testBinary)
			if c.Selected != tc.selected || c.AddCreate != tc.create || c.AddPoststop != tc.poststop {
				t.Errorf("selected %v create %v poststop %v (%s); want %v %v %v",
					c.Selected, c.AddCreate, c.AddPoststop, c.Reason, tc.selected, tc.create, tc.poststop)
			}
			if tc.selected && !maps.Equal(c.Annotations, tc.carry) {
				t.Errorf("annotations to carry %v, want %v", c.Annotations, tc.carry)
			}
			if !tc.selected && len(c.Annotations) > 0 {
				t.Errorf("annotations carried for a container that is not selected: %v", c.Annotations)
			}
			if !strings.Contains(c.Reason, tc.reasonHas) {
				t.Errorf("reason %q, want it to say %q", c.Reason, tc.reasonHas)
			}
		})
	}
}
