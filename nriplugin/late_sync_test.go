// SPDX-License-Identifier: Apache-2.0

package nriplugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

// latePod is a pod sandbox in a network namespace of its own, with one
// container whose process runs there, as NRI reports them at
// synchronization: the container started while no plugin was connected,
// so no hook of ours is in its spec.
type latePod struct {
	ns  *testnet.Netns
	pod *api.PodSandbox
	ctr *api.Container
}

func startLatePods(t *testing.T, n int) []latePod {
	t.Helper()
	testnet.RequireTools(t, "sleep")
	var pods []latePod
	for i := range n {
		ns := testnet.NewNetns(t)
		cmd := ns.Command(context.Background(), "sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitIn(t, cmd.Process.Pid, ns.Path)
		id := fmt.Sprintf("pod-%d", i)
		nss := []*api.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: ns.Path}, {Type: "mount"}}
		pods = append(pods, latePod{ns: ns,
			pod: &api.PodSandbox{Id: id, Name: id, Namespace: "team", Uid: id, Linux: &api.LinuxPodSandbox{Namespaces: nss}},
			ctr: &api.Container{Id: fmt.Sprintf("ctr-%d", i), PodSandboxId: id, Name: "app", State: api.ContainerState_CONTAINER_RUNNING,
				Pid: uint32(cmd.Process.Pid), Linux: &api.LinuxContainer{Namespaces: nss}},
		})
	}
	return pods
}

// waitIn waits for pid (nsenter, which execs the command) to be in the
// namespace at path.
func waitIn(t *testing.T, pid int, path string) {
	t.Helper()
	want, closeNs, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	closeNs()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if got, closeNs, err := netns.Open(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
			closeNs()
			if got.ID == want.ID {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is not in %s after 5 s", pid, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// synchronize starts a plugin as a restart does (New, the runtime's
// Configure), hands it the runtime's account, and waits for its late
// fencing to end. It returns the plugin's log.
func synchronize(t *testing.T, f fixture, pods []latePod) *syncBuffer {
	t.Helper()
	log := logrus.New()
	buf := &syncBuffer{}
	log.SetOutput(buf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin log:\n%s", buf)
		}
	})
	p, err := nriplugin.New(nriplugin.Options{Binary: f.binary, Config: f.cfgPath, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.Configure(ctx, "", "test", "0"); err != nil {
		t.Fatal(err)
	}
	var ps []*api.PodSandbox
	var cs []*api.Container
	for _, lp := range pods {
		ps, cs = append(ps, lp.pod), append(cs, lp.ctr)
	}
	if _, err := p.Synchronize(ctx, ps, cs); err != nil {
		t.Fatalf("Synchronize: %v", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		ready, why := p.Synchronized()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late fencing did not end within a minute: %s", why)
		}
	}
	if strings.Contains(buf.String(), "cannot be fenced") {
		t.Errorf("a container could not be fenced:\n%s", buf)
	}
	return buf
}

// fences reads every record of the state directory: the key of each
// owner's namespace, by container id.
func fences(t *testing.T, stateDir string) map[string]*records.Record {
	t.Helper()
	store, err := records.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := store.Keys()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*records.Record{}
	for _, k := range keys {
		rec, err := store.Load(k)
		if err != nil || rec == nil {
			t.Fatalf("record %s: %v", k, err)
		}
		for _, o := range rec.Owners {
			out[o.ID] = rec
		}
	}
	return out
}

// The plugin's synchronization, as after a restart of the plugin while
// pods ran unfenced: every running selected container is fenced in its
// pod's namespace, with a record that names it; a second synchronization
// (the plugin restarted again) finds them all fenced and changes nothing,
// neither the rules nor the records.
func TestSynchronizeFencesRunningPods(t *testing.T) {
	testnet.RequireRoot(t)
	const n = 20
	pods := startLatePods(t, n)
	stateDir := filepath.Join(t.TempDir(), "state")
	f := newFixture(t, "proxies: [198.51.100.1:3128]\nstateDir: "+stateDir+"\n")

	before := map[string]string{}
	for _, lp := range pods {
		before[lp.ctr.Id] = rulesIn(t, lp.ns)
		if testnet.HasFence(before[lp.ctr.Id]) {
			t.Fatalf("%s is fenced before the synchronization:\n%s", lp.ns.Path, before[lp.ctr.Id])
		}
	}

	synchronize(t, f, pods)
	first := fences(t, stateDir)
	rules := map[string]string{}
	for _, lp := range pods {
		rules[lp.ctr.Id] = rulesIn(t, lp.ns)
		if !testnet.HasFence(rules[lp.ctr.Id]) {
			t.Errorf("%s (pod %s) has no fence after the synchronization:\n%s", lp.ns.Path, lp.pod.Id, rules[lp.ctr.Id])
		}
		ns, closeNs, err := netns.Open(lp.ns.Path)
		if err != nil {
			t.Fatal(err)
		}
		closeNs()
		rec := first[lp.ctr.Id]
		switch {
		case rec == nil:
			t.Errorf("no record owned by %s", lp.ctr.Id)
		case rec.Netns != ns.ID || len(rec.Owners) != 1 || rec.Incomplete != "":
			t.Errorf("record of %s: namespace %s, %d owners, incomplete %q; want %s, 1, complete", lp.ctr.Id, rec.Netns, len(rec.Owners), rec.Incomplete, ns.ID)
		}
	}
	if len(first) != n {
		t.Errorf("%d containers own a record, want %d", len(first), n)
	}

	log := synchronize(t, f, pods)
	second := fences(t, stateDir)
	// The plugin loads its config at its start and again at the runtime's
	// Configure: the running fences are brought to it once, not twice.
	const applied = "brought the running fences to the config"
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), applied) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := strings.Count(log.String(), applied); n != 1 {
		t.Errorf("the config was applied to the running fences %d times at a start, want once:\n%s", n, log)
	}
	for _, lp := range pods {
		id := lp.ctr.Id
		if got := rulesIn(t, lp.ns); got != rules[id] {
			t.Errorf("the second synchronization changed the rules of %s:\n%s", lp.ns.Path, testnet.Diff(rules[id], got))
		}
		a, _ := json.Marshal(first[id])
		b, _ := json.Marshal(second[id])
		if d := cmp.Diff(string(a), string(b)); d != "" {
			t.Errorf("the second synchronization changed the record of %s (-first +second):\n%s", id, d)
		}
	}
}

func rulesIn(t *testing.T, ns *testnet.Netns) string {
	t.Helper()
	dump, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return dump
}
