// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The Kubernetes path of bypass-hook, for real: containerd 2.2 serves CRI, the CNI bridge
// makes the pod's namespace, containerd calls `bypass-hook nri`, and runc runs the hooks the
// plugin injected. The probes go from the pod's namespace to the node's tinyproxy and HTTP
// server on the bridge's gateway.

// TestNRIExternalPlugin: `bypass-hook nri --socket-path ... --binary ... --config ...` runs
// beside containerd, as the DaemonSet and the systemd unit run it.
func TestNRIExternalPlugin(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	plugin := startPlugin(t, e, h)

	t.Run("annotated pod is fenced", func(t *testing.T) {
		r := startPod(t, e, PodConfig{Name: "fenced", Annotations: annotated}, "app")
		ctr, ns := r.Ctrs[0], r.Status.NetNSPath
		t.Logf("pod %s started in %s (runp %s, create %s, start %s); netns %s",
			short(r.Pod.ID), ms(r.Total()), ms(r.RunP), ms(r.Create), ms(r.Start), ns)
		requireInjected(t, e, ctr, true)
		rules := fenceRules(t, e, ns)
		if countAppended(rules) == 0 {
			t.Fatalf("no bypass-hook rules in the pod's namespace %s", ns)
		}
		t.Logf("%d bypass-hook rules in the pod's namespace", countAppended(rules))
		requireFenced(t, e, ns)
		// And as the workload sees it, from inside the container.
		expectProbe(t, "ctr: http via proxy v4", e.ProbeFromContainer(ctr, "http", e.HTTPAddr4(), e.ProxyAddr4(), probeTimeout), Success)
		expectProbe(t, "ctr: http direct v4", e.ProbeFromContainer(ctr, "http", e.HTTPAddr4(), "", probeTimeout), Refused)
		expectProbe(t, "ctr: http direct v6", e.ProbeFromContainer(ctr, "http", e.HTTPAddr6(), "", probeTimeout), Refused)

		create, err := h.waitStage(ctr, "create", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hook create: %s, %.1f ms, %d rules", create.Action, create.DurationMS, create.Rules)
		id := netnsID(t, ns)
		rec := h.recordOf(t, id)
		if rec == nil {
			t.Fatalf("no record of the pod's namespace %s in %s", id, h.StateDir)
		}
		if got := owners(rec); !slices.Equal(got, []string{ctr}) {
			t.Errorf("record owners %v, want [%s]", got, ctr)
		}

		r.remove(t, h, id)
		post, err := h.waitStage(ctr, "poststop", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hook poststop: %s, %.1f ms", post.Action, post.DurationMS)
	})

	t.Run("plain pod is not fenced", func(t *testing.T) {
		r := startPod(t, e, PodConfig{Name: "plain"}, "app")
		requireUnfenced(t, e, h, r)
		r.remove(t, h, netnsID(t, r.Status.NetNSPath))
	})

	t.Run("annotated pod in an excluded namespace is not fenced", func(t *testing.T) {
		r := startPod(t, e, PodConfig{Name: "system", Namespace: "kube-system", Annotations: annotated}, "app")
		requireUnfenced(t, e, h, r)
		if !strings.Contains(plugin.Log(), "namespace kube-system is excluded") {
			t.Errorf("the plugin's log does not say why it left the pod alone:\n%s", tail(plugin.Log(), 10))
		}
		r.remove(t, h, netnsID(t, r.Status.NetNSPath))
	})

	t.Run("annotated pod on the host network is refused", func(t *testing.T) {
		// The node's namespace is the test's, where containerd and its shims run: the hook
		// sees it as its own and refuses to fence it (failure: closed), so the pod does not
		// run believing it is fenced.
		pod, err := e.RunPod(PodConfig{Name: "hostnet", Annotations: annotated, HostNetwork: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pod.RemoveForce() })
		id, err := pod.StartContainer(ContainerConfig{Name: "app"})
		if err == nil || !strings.Contains(err.Error(), "shares the host's network namespace") {
			t.Fatalf("want the start refused by the hook for the host network, got %v", err)
		}
		t.Logf("refused: %s", err.Error()[max(0, strings.LastIndex(err.Error(), "bypass-hook-oci create")):])
		requireInjected(t, e, id, true)
		if rules := fenceRules(t, e, e.NetNS); len(rules) != 0 {
			t.Errorf("rules in the node's namespace:\n%s", strings.Join(rules, "\n"))
		}
		h.requireNoRecords(t, netnsID(t, e.NetNS), id)
		if err := pod.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := pod.Remove(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("two containers share one fence", func(t *testing.T) {
		r := startPod(t, e, PodConfig{Name: "pair", Annotations: annotated}, "first", "second")
		first, second, ns := r.Ctrs[0], r.Ctrs[1], r.Status.NetNSPath
		requireInjected(t, e, first, true)
		requireInjected(t, e, second, true)
		id := netnsID(t, ns)
		rec := h.recordOf(t, id)
		if rec == nil {
			t.Fatalf("no record of the pod's namespace")
		}
		if got, want := owners(rec), sortedCopy(first, second); !slices.Equal(got, want) {
			t.Errorf("record owners %v, want %v", got, want)
		}
		for _, c := range r.Ctrs {
			if c, err := h.waitStage(c, "create", time.Second); err != nil {
				t.Error(err)
			} else {
				t.Logf("hook create of %s: %s (%.1f ms)", short(c.Container), c.Action, c.DurationMS)
			}
		}
		requireFenced(t, e, ns)

		// The first container stops: the second still runs in the namespace, so the rules stay.
		stopped := time.Now()
		if err := e.StopContainer(first, 0); err != nil {
			t.Fatal(err)
		}
		returned := time.Since(stopped)
		post, err := h.waitStage(first, "poststop", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("`crictl stop` of the first container returned after %s; its poststop hook (%s) logged %s after the stop began, with no `crictl rm`",
			ms(returned), post.Action, ms(post.Time.Sub(stopped)))
		if rules := fenceRules(t, e, ns); countAppended(rules) == 0 {
			t.Fatal("the rules left with the first container while the second still runs")
		}
		if rec := h.recordOf(t, id); rec == nil || !slices.Equal(owners(rec), []string{second}) {
			t.Errorf("after the first container stopped, the record is %+v; want the second as its only owner", rec)
		}
		requireFenced(t, e, ns)

		// The second, the last app container, stops: the pause container still holds the
		// namespace, and the last poststop takes the rules out of it.
		stopped = time.Now()
		if err := e.StopContainer(second, 0); err != nil {
			t.Fatal(err)
		}
		post, err = h.waitStage(second, "poststop", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("poststop of the last container: %s, logged %s after its stop began", post.Action, ms(post.Time.Sub(stopped)))
		if st, err := r.Pod.Inspect(); err != nil || st.State != "SANDBOX_READY" {
			t.Fatalf("want the sandbox still running (pause holds the namespace): %v %v", st, err)
		}
		if left := waitRulesGone(t, e, ns, 5*time.Second); len(left) != 0 {
			t.Errorf("the last poststop left rules in the still living namespace:\n%s", strings.Join(left, "\n"))
		}
		h.requireNoRecords(t, id, r.Ctrs...)
		requireOpen(t, e, ns)

		r.remove(t, h, id)
	})
}

func sortedCopy(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
