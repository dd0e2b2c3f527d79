// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nriKills is how many times the plugin is SIGKILLed while it late-fences.
const nriKills = 10

// TestNRIKilledDuringLateFence (issue 25): two annotated pods start while no plugin is
// connected, unfenced; the plugin starts and is SIGKILLed at a random or evenly spaced
// moment across the time it takes to connect and late-fence them. Whatever the moment, no
// pod's namespace holds rules that no record names, and the plugin started again fences both
// (direct connections refused, a complete record naming the container), after which their
// poststop through the plugin leaves nothing.
func TestNRIKilledDuringLateFence(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	startPods := func(round int) []*podRun {
		var pods []*podRun
		for i := range 2 {
			r := startPod(t, e, PodConfig{Name: fmt.Sprintf("killed-%d-%d", round, i), Namespace: "faults", Annotations: annotated}, "app")
			pods = append(pods, r)
		}
		return pods
	}
	plugin := func() *Process {
		p, err := e.StartProcess("bypass-hook-nri", []string{hookBin, "nri", "--socket-path", e.NRISocket, "--binary", hookBin, "--config", h.Config})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	fencedAndRemoved := func(what string, pods []*podRun) {
		t.Helper()
		for _, r := range pods {
			waitRefused(t, r.Status.NetNSPath, e.HTTPAddr4(), time.Now(), 15*time.Second)
			id := netnsID(t, r.Status.NetNSPath)
			// The rules refuse a moment before the create saves the record complete.
			rec := h.recordOf(t, id)
			for deadline := time.Now().Add(10 * time.Second); (rec == nil || rec.Incomplete != "") && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				rec = h.recordOf(t, id)
			}
			if rec == nil || rec.Incomplete != "" || !rec.HasOwner(r.Ctrs[0]) {
				t.Errorf("%s: record of pod %s: %+v, want complete, naming its container", what, r.Pod.Config.Name, rec)
			}
			r.remove(t, h, id)
		}
	}

	// A whole late fence: the span the kills are swept across.
	pods := startPods(0)
	began := time.Now()
	p := plugin()
	var span time.Duration
	for _, r := range pods {
		span = max(span, waitRefused(t, r.Status.NetNSPath, e.HTTPAddr4(), began, 15*time.Second))
	}
	fencedAndRemoved("a whole late fence", pods)
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("the plugin late-fences two pods within %s of its start here; kills are swept across 0-%s", ms(span), ms(span))

	var killed, unrecorded, incomplete, recorded, nothing int
	for i := range nriKills {
		d := time.Duration(rand.Int64N(int64(span)))
		if i%2 == 1 {
			d = span * time.Duration(i) / nriKills
		}
		pods := startPods(i + 1)
		p := plugin()
		time.Sleep(d)
		if !p.Running() {
			t.Fatalf("the plugin exited by itself: %v\n%s", p.Err(), tail(p.Log(), 20))
		}
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		killed++
		for _, r := range pods {
			rules := fenceRules(t, e, r.Status.NetNSPath)
			rec := h.recordOf(t, netnsID(t, r.Status.NetNSPath))
			switch {
			case len(rules) > 0 && rec == nil:
				unrecorded++
				t.Errorf("plugin killed after %s: pod %s has rules that no record names", ms(d), r.Pod.Config.Name)
			case rec != nil && rec.Incomplete != "":
				incomplete++
			case rec != nil:
				recorded++
			default:
				nothing++
			}
		}
		again := startPluginArgs(t, e, h)
		fencedAndRemoved(fmt.Sprintf("plugin killed after %s, then started again", ms(d)), pods)
		if err := again.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d plugins killed while late-fencing two pods each: %d pods left with unrecorded rules, %d with an incomplete record, %d fenced and recorded, %d untouched; the plugin started again fenced every one and their poststops left nothing",
		killed, unrecorded, incomplete, recorded, nothing)
}

// containerdRestarts is how many times containerd is restarted under fenced pods.
const containerdRestarts = 3

// TestContainerdRestartedWithFencedPods (issue 25): containerd restarts, again and again,
// while pods it fenced (through the plugin's hook) run. Each time the pods keep their fence
// (direct connections refused, proxy works), their records stay complete and status calls
// each fence whole; a pod started after the restarts is fenced too, and every pod's poststop
// leaves nothing.
func TestContainerdRestartedWithFencedPods(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	plugin := startPlugin(t, e, h)
	var pods []*podRun
	for i := range 2 {
		r := startPod(t, e, PodConfig{Name: fmt.Sprintf("restarted-%d", i), Namespace: "faults", Annotations: annotated}, "app")
		requireFenced(t, e, r.Status.NetNSPath)
		pods = append(pods, r)
	}
	check := func(what string, viaProxy bool) {
		t.Helper()
		for _, r := range pods {
			if viaProxy {
				requireFenced(t, e, r.Status.NetNSPath)
			} else {
				expectProbe(t, "netns: http direct v4", ProbeHTTP(r.Status.NetNSPath, e.HTTPAddr4(), probeTimeout), Refused)
				expectProbe(t, "netns: http direct v6", ProbeHTTP(r.Status.NetNSPath, e.HTTPAddr6(), probeTimeout), Refused)
			}
			if rec := h.recordOf(t, netnsID(t, r.Status.NetNSPath)); rec == nil || rec.Incomplete != "" || !rec.HasOwner(r.Ctrs[0]) {
				t.Errorf("%s: record of pod %s: %+v, want complete, naming its container", what, r.Pod.Config.Name, rec)
			}
		}
		if out, code := runHookCode(t, "--config", h.Config, "status", "--summary"); code != 0 || strings.Count(out, " yes ") != len(pods) {
			t.Errorf("%s: status --summary exit %d, want 0 and %d fences whole:\n%s", what, code, len(pods), out)
		}
	}
	for i := range containerdRestarts {
		since := e.ContainerdLogSize()
		if err := e.RestartContainerd(); err != nil {
			t.Fatal(err)
		}
		if err := e.WaitNRIPlugin(since, "bypass-hook", 15*time.Second); err != nil {
			t.Fatalf("%v\nplugin log:\n%s", err, tail(plugin.Log(), 20))
		}
		check(fmt.Sprintf("after restart %d", i+1), true)
	}
	after := startPod(t, e, PodConfig{Name: "restarted-after", Namespace: "faults", Annotations: annotated}, "app")
	requireFenced(t, e, after.Status.NetNSPath)
	pods = append(pods, after)
	// Only the fence's own refusals now: the node's bridge, whose MAC address nobody set,
	// takes the lowest of its ports', so a pod joining can change it, and the other pods
	// reach the gateway (the proxy) again only once their neighbour entries expire.
	check("a pod started after the restarts", false)
	for _, r := range pods {
		r.remove(t, h, netnsID(t, r.Status.NetNSPath))
	}
	t.Logf("containerd restarted %d times under 2 fenced pods: each time both fences whole and refusing, both records complete; the pod after fenced; every poststop left nothing", containerdRestarts)
}
