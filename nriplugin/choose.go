// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	nriplugin "github.com/containerd/nri/pkg/plugin"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// Choice is what the plugin does with one container.
type Choice struct {
	// Selected: the container is one for the hook. Its annotations are
	// carried, even when the hook is registered already.
	Selected bool
	// AddCreate, AddPoststop: the stages to inject; false where a hook of
	// ours is there already (hooks.d, another plugin, the spec).
	AddCreate, AddPoststop bool
	// Annotations to set on the container so that the hook sees in its
	// state what the pod says.
	Annotations map[string]string
	// Reason says why, for the log.
	Reason string
	// Refused is the policy's error when the hook will refuse the
	// container (a widening or misspelt annotation).
	Refused error
}

// Choose decides for one container, from the config, the pod and the
// container as NRI shows them. binary is the hook the plugin injects.
//
// The decision is the hook's own (config.Decide) on the effective
// annotations, so that the plugin never injects where the hook would do
// nothing, and never leaves out a container the hook would refuse: such a
// container gets the hook, which refuses it with the reason.
func Choose(cfg *config.Config, pod *api.PodSandbox, ctr *api.Container, binary string) Choice {
	if ns := pod.GetNamespace(); ns != "" && slices.Contains(cfg.NRI.ExcludeNamespaces, ns) {
		return Choice{Reason: fmt.Sprintf("namespace %s is excluded (nri.excludeNamespaces)", ns)}
	}
	eff := EffectiveAnnotations(pod, ctr)
	if hostNetwork(ctr) && !optedIn(eff) {
		// Rules there would cut off the node. A pod that asks for the fence
		// by annotation gets the hook, which refuses it (failure: closed)
		// or warns (failure: open): it must not believe it is fenced.
		return Choice{Reason: "the pod is on the host network, which cannot be fenced"}
	}
	c := Choice{Selected: true, Annotations: map[string]string{}}
	dec, err := cfg.Decide(eff)
	switch {
	case err != nil:
		c.Reason, c.Refused = "the hook will refuse it: "+err.Error(), err
	case !dec.Fence:
		return Choice{Reason: dec.Reason}
	default:
		c.Reason = "selected"
	}
	for k, v := range eff {
		if ctr.GetAnnotations()[k] != v {
			c.Annotations[k] = v
		}
	}
	hasCreate, hasPoststop := registered(ctr.GetHooks(), binary)
	c.AddCreate, c.AddPoststop = !hasCreate, !hasPoststop
	if hasCreate && hasPoststop {
		c.Reason += "; the hook is registered already"
	}
	return c
}

// optedIn tells whether the annotations say enabled=true, in any case of
// the key.
func optedIn(eff map[string]string) bool {
	for k, v := range eff {
		if canon, _ := config.ClassifyAnnotationKey(k); canon == config.AnnEnabled && v == "true" {
			return true
		}
	}
	return false
}

// EffectiveAnnotations resolves the hook's annotations for a container:
// every key of ours in any case, and every near miss of our prefix
// (config.IsOurAnnotationKey), its own, else the pod's as NRI resolves them
// (the key, or the key with "/container.NAME" or "/pod" appended). All of
// them, known or not: the hook refuses a key it does not know, and a
// misspelt opt-in left out here would leave the container unfenced in
// silence. For enabled, "false" from either wins: an opt-out anywhere must
// not be overridden by an opt-in elsewhere.
func EffectiveAnnotations(pod *api.PodSandbox, ctr *api.Container) map[string]string {
	keys := map[string]bool{}
	for k := range ctr.GetAnnotations() {
		if config.IsOurAnnotationKey(k) {
			keys[k] = true
		}
	}
	for k := range pod.GetAnnotations() {
		if !config.IsOurAnnotationKey(k) {
			continue
		}
		if base, ok := strings.CutSuffix(k, "/pod"); ok {
			k = base
		} else if base, name, ok := strings.Cut(k, "/container."); ok {
			if name != ctr.GetName() {
				continue // meant for another container of the pod
			}
			k = base
		}
		keys[k] = true
	}
	eff := map[string]string{}
	for k := range keys {
		own, hasOwn := ctr.GetAnnotations()[k]
		fromPod, hasPod := nriplugin.GetEffectiveAnnotation(pod, k, ctr.GetName())
		canon, _ := config.ClassifyAnnotationKey(k)
		switch {
		case canon == config.AnnEnabled && hasOwn && hasPod && (own == "false" || fromPod == "false"):
			eff[k] = "false"
		case hasOwn:
			eff[k] = own
		case hasPod:
			eff[k] = fromPod
		}
	}
	return eff
}

// chooseBroken decides while the config cannot be loaded: every container
// outside the default excluded namespaces gets the hook, which refuses it
// with the config's error, rather than starting unfenced.
func chooseBroken(defaults *config.Config, broken error, pod *api.PodSandbox, ctr *api.Container, binary string) Choice {
	if ns := pod.GetNamespace(); ns != "" && slices.Contains(defaults.NRI.ExcludeNamespaces, ns) {
		return Choice{Reason: fmt.Sprintf("namespace %s is excluded by default, and the config cannot be loaded", ns)}
	}
	if hostNetwork(ctr) {
		return Choice{Reason: "the pod is on the host network, which cannot be fenced"}
	}
	hasCreate, hasPoststop := registered(ctr.GetHooks(), binary)
	return Choice{Selected: true, AddCreate: !hasCreate, AddPoststop: !hasPoststop,
		Reason: "the config cannot be loaded, so the hook will refuse the container: " + broken.Error()}
}

// hostNetwork tells whether the container shares the node's network
// namespace: its spec lists namespaces, none of them the network's.
func hostNetwork(ctr *api.Container) bool {
	nss := ctr.GetLinux().GetNamespaces()
	if len(nss) == 0 {
		return false // not known; the hook checks it again
	}
	return !slices.ContainsFunc(nss, func(n *api.LinuxNamespace) bool { return n.GetType() == "network" })
}

// registered tells whether the container already runs bypass-hook in the
// runtime's namespace before the workload starts (createRuntime or prestart)
// and at poststop. createContainer and startContainer hooks do not count:
// they run inside the container, startContainer's from its root filesystem.
func registered(h *api.Hooks, binary string) (create, poststop bool) {
	ours := func(hooks []*api.Hook) bool {
		return slices.ContainsFunc(hooks, func(x *api.Hook) bool { return install.IsOurs(x.GetPath(), binary) })
	}
	create = ours(h.GetPrestart()) || ours(h.GetCreateRuntime())
	return create, ours(h.GetPoststop())
}
