// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// opening is a destination the older config of these tests allows and
// the newer one does not.
const opening = "198.51.100.50"

// configTest is a plugin started with a config file the test rewrites,
// and the state directory its fences are recorded in.
type configTest struct {
	p        *Plugin
	log      *test.Hook
	stateDir string
	cfgPath  string
	binary   string
}

// newConfigTest starts a plugin (New, as at its start) with the config
// proxies plus yaml.
func newConfigTest(t *testing.T, yaml string) (configTest, *config.Config) {
	t.Helper()
	testnet.RequireRoot(t)
	dir := t.TempDir()
	c := configTest{stateDir: filepath.Join(dir, "state"), cfgPath: filepath.Join(dir, "config.yaml"), binary: filepath.Join(dir, "bypass-hook")}
	if err := os.WriteFile(c.binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := c.write(t, yaml)
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	p, err := New(Options{Binary: c.binary, Config: c.cfgPath, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	c.p, c.log = p, hook
	// The applies it started end before the state directory is removed.
	t.Cleanup(func() {
		for deadline := time.Now().Add(time.Minute); c.appliesUnderWay() > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the plugin's applies still run a minute after the test")
				return
			}
		}
	})
	return c, cfg
}

// write renames a new config file into place, as editors do, and returns
// it parsed.
func (c configTest) write(t *testing.T, yaml string) *config.Config {
	t.Helper()
	yaml = "proxies: [198.51.100.1:3128]\nstateDir: " + c.stateDir + "\n" + yaml
	if err := os.WriteFile(c.cfgPath+".new", []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(c.cfgPath+".new", c.cfgPath); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// load writes a new config and has the plugin read it, as a request of
// the runtime does: a new config is applied in the background.
func (c configTest) load(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg := c.write(t, yaml)
	c.p.current()
	return cfg
}

// openConfig is the older config of these tests: it allows opening.
const openConfig = "allow: [{cidr: " + opening + "/32}]\n"

// newOpenPlugin starts a plugin with openConfig, and a pod it fenced late
// with it.
func newOpenPlugin(t *testing.T) (configTest, *config.Config, fencedPod) {
	t.Helper()
	c, cfg := newConfigTest(t, openConfig)
	return c, cfg, newFencedPod(t, c, cfg)
}

// runningPod is a pod whose container runs (sleeps) in its network
// namespace, started without the hook, as the runtime reports it.
func runningPod(t *testing.T) (*testnet.Netns, *api.PodSandbox, *api.Container) {
	t.Helper()
	ns := testnet.NewNetns(t)
	pid := sleepIn(t, ns)
	nss := []*api.LinuxNamespace{{Type: "network", Path: ns.Path}}
	pod := &api.PodSandbox{Id: "pod", Name: "pod", Namespace: "team", Linux: &api.LinuxPodSandbox{Namespaces: nss}}
	ctr := &api.Container{Id: "late-ctr", PodSandboxId: "pod", Name: "app", State: api.ContainerState_CONTAINER_RUNNING, Pid: uint32(pid)}
	return ns, pod, ctr
}

// sleepIn starts a process that sleeps in ns until the test ends, and
// returns its pid once it is there.
func sleepIn(t *testing.T, ns *testnet.Netns) int {
	t.Helper()
	testnet.RequireTools(t, "sleep")
	cmd := ns.Command(context.Background(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, ok := netns.Peek(netns.PidPath(cmd.Process.Pid)); ok && got == want {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the container's process is not in its namespace after 5 s")
		}
	}
}

// expectPolicyOf checks that the fence of ns is the one cfg gives.
func expectPolicyOf(t *testing.T, stateDir string, ns *testnet.Netns, cfg *config.Config) {
	t.Helper()
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	store, err := records.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Load(id.Key())
	if err != nil || rec == nil {
		t.Fatalf("no record of the fence: %v", err)
	}
	dec, err := cfg.Decide(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Digest != dec.Policy.Digest() {
		t.Errorf("the fence has the policy %s, not the config in force's %s", rec.Digest, dec.Policy.Digest())
	}
	if dump, err := testnet.RulesIn(ns); err != nil || strings.Contains(dump, opening) {
		t.Errorf("the fence still lets %s through, which the config in force no longer allows (%v):\n%s", opening, err, dump)
	}
}

// A late-fencing pass fences with the config in force when it reaches each
// container, not the one of its synchronization: a pass waits for the one
// before it and takes a hook stage's time per container, and the operator
// may tighten the config meanwhile. The plugin's apply of the new config
// goes through the fences recorded then; one the pass put in afterwards
// with the old config kept the old config's openings (here an allowed
// destination) until the next config change.
func TestLatePassFencesWithTheConfigInForce(t *testing.T) {
	c, old := newConfigTest(t, openConfig)
	ns, pod, ctr := runningPod(t)
	items := selectLate(old, nil, []*api.PodSandbox{pod}, []*api.Container{ctr}, c.binary)
	if len(items) != 1 || items[0].Cannot != "" {
		t.Fatalf("selectLate: %+v", items)
	}

	// The pass waits (for the pass before it) while the config is tightened.
	release := make(chan struct{})
	c.p.late.testPass = func() { <-release }
	done := make(chan struct{})
	go func() { c.p.fenceLate(old, items); close(done) }()
	tight := c.load(t, "")
	if cfg, _, _ := c.p.current(); len(cfg.Allow) != 0 {
		t.Fatal("the plugin did not load the tightened config")
	}
	close(release)
	<-done
	expectPolicyOf(t, c.stateDir, ns, tight)
}

// fencedPod is a running pod late-fenced with cfg; lockFence takes its
// record's lock, as a hook at work in its namespace does, and fence
// late-fences it again with cfg.
type fencedPod struct {
	ns        *testnet.Netns
	fence     func(cfg *config.Config)
	lockFence func() (unlock func())
}

func newFencedPod(t *testing.T, c configTest, cfg *config.Config) fencedPod {
	t.Helper()
	ns, pod, ctr := runningPod(t)
	fp := fencedPod{ns: ns, fence: func(cfg *config.Config) {
		c.p.fenceLate(cfg, selectLate(cfg, nil, []*api.PodSandbox{pod}, []*api.Container{ctr}, c.binary))
	}}
	fp.fence(cfg)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	store, err := records.Open(c.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	fp.lockFence = func() func() {
		unlock, err := store.Lock(id.Key())
		if err != nil {
			t.Fatal(err)
		}
		return unlock
	}
	return fp
}

// run runs the plugin until the test ends, with no runtime to connect to:
// what it does on its own.
func (c configTest) run(t *testing.T) {
	c.p.opts.SocketPath = filepath.Join(t.TempDir(), "no-runtime.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { c.p.Run(ctx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })
}

// applies counts the plugin's applies of a config to the running fences.
func (c configTest) applies() int {
	n := 0
	for _, e := range c.log.AllEntries() {
		if strings.Contains(e.Message, "the running fences to the config") {
			n++
		}
	}
	return n
}

// waitApplies waits until the plugin has applied a config n times.
func (c configTest) waitApplies(t *testing.T, round, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); c.applies() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("round %d: the applies did not end within a minute", round)
		}
	}
}

// Two configs loaded one after the other are each applied to the running
// fences in the background; the fences must end with the newer. Each
// apply held the config it was started with, and the two went through the
// fences side by side: where both waited for a fence's lock (a hook
// running there), the older could come second and put its config back,
// openings and all. Each round here makes them both wait for it.
func TestAppliesEndWithTheNewestConfig(t *testing.T) {
	c, _, pod := newOpenPlugin(t)
	for round := range 8 {
		unlock := pod.lockFence()
		before := c.applies()
		c.load(t, openConfig)
		waitGoroutines(t, 1, "nriplugin.(*Plugin).applyConfig", "records.(*Store).Lock(")
		tight := c.load(t, "")
		// The second apply at the lock too, or waiting its turn.
		waitGoroutines(t, 2, "nriplugin.(*Plugin).applyConfig", "Lock(")
		unlock()
		c.waitApplies(t, round, before+2)
		expectPolicyOf(t, c.stateDir, pod.ns, tight)
		if t.Failed() {
			t.Fatalf("round %d: the older config was applied last", round)
		}
	}
}

// A late fence and the apply of a config loaded while it ran end with the
// newer config, whichever reaches the namespace first: the late fence read
// the config in force, then waited for the namespace's lock (a hook at
// work there) beside the apply of the newer one, and where the apply got
// the lock first the late fence put the older config back (its create
// follows the config it read). Each round here makes both wait for the
// lock.
func TestLateFenceAndApplyTakeTurns(t *testing.T) {
	c, _, pod := newOpenPlugin(t)
	for round := range 8 {
		// Counted before the load: its apply may be done by the time it returns.
		before := c.applies()
		old := c.load(t, openConfig)
		c.waitApplies(t, round, before+1)
		unlock := pod.lockFence()
		done := make(chan struct{})
		go func() { pod.fence(old); close(done) }()
		waitGoroutines(t, 1, "nriplugin.(*Plugin).fenceLate", "records.(*Store).LockBy(") // the late fence at the lock
		before = c.applies()
		tight := c.load(t, "")
		waitGoroutines(t, 1, "nriplugin.(*Plugin).applyConfig", "Lock(") // the apply at the lock, or waiting its turn
		unlock()
		<-done
		c.waitApplies(t, round, before+1)
		expectPolicyOf(t, c.stateDir, pod.ns, tight)
		if t.Failed() {
			t.Fatalf("round %d: the late fence put the older config back after the newer one's apply", round)
		}
	}
}

// A config edited on the node reaches the running fences with no container
// created meanwhile: the plugin read its config again only when the
// runtime asked it something (a container created, stopped, a
// synchronization), so on a quiet node the fences kept the old config,
// openings and all, for as long as no container started there.
func TestConfigEditReachesFencesOnAQuietNode(t *testing.T) {
	c, _, pod := newOpenPlugin(t)
	c.run(t)
	before := c.applies()
	tight := c.write(t, "")
	c.waitApplies(t, 0, before+1)
	expectPolicyOf(t, c.stateDir, pod.ns, tight)
}

// A hook that read the config file before an edit can write its fence
// after the plugin's apply of the edit went by (it waited for the
// namespace's lock, or the node is slow): it follows the config it read,
// and put the older back, openings and all, for good. A hook stage ends
// within hook.StageBudget, so the running plugin applies the config once
// more then.
func TestApplyAgainAfterHooksThatReadTheOldConfig(t *testing.T) {
	c, old, pod := newOpenPlugin(t)
	c.run(t)
	before := c.applies()
	tight := c.load(t, "")
	c.waitApplies(t, 0, before+1)

	// The other container of the pod, whose hook read the old config.
	pid := sleepIn(t, pod.ns)
	id, err := netns.Stat(pod.ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := test.NewNullLogger()
	st := &specs.State{Version: specs.Version, ID: "slow-hook", Status: specs.StateCreated, Pid: pid}
	if res, err := hook.New(old, logger).Create(st); err != nil || !strings.Contains(res.Action, "replaced with the newest config's") {
		t.Fatalf("the slow hook's create: %+v, %v; want it to follow the config it read", res, err)
	}

	store, err := records.Open(c.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := tight.Decide(nil)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(hook.StageBudget + 20*time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rec, err := store.Load(id.Key()); err == nil && rec != nil && rec.Digest == dec.Policy.Digest() {
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	expectPolicyOf(t, c.stateDir, pod.ns, tight)
}

// A config that stops selecting a container while its late create runs
// (it waits for the namespace's lock) does not take the container's
// poststop from the plugin: the create put a fence in, which no apply
// removes, and the plugin alone can run the poststop that removes it when
// the container stops. The create ran again with the newer config, found
// the container no longer selected, and dropped it: the fence stayed for
// good, its owner unknown to the plugin.
func TestLateFenceDeselectedWhileItsCreateRanKeepsItsPoststop(t *testing.T) {
	c, open := newConfigTest(t, openConfig)
	ns, pod, ctr := runningPod(t)
	items := selectLate(open, nil, []*api.PodSandbox{pod}, []*api.Container{ctr}, c.binary)
	if len(items) != 1 || items[0].Cannot != "" {
		t.Fatalf("selectLate: %+v", items)
	}
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := records.Open(c.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := store.Lock(id.Key())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.p.fenceLate(open, items); close(done) }()
	waitGoroutines(t, 1, "nriplugin.(*Plugin).lateCreate", "records.(*Store).LockBy(")
	c.load(t, openConfig+"nri: {excludeNamespaces: [team]}\n")
	unlock()
	<-done

	if rec, err := store.Load(id.Key()); err != nil || rec == nil {
		t.Fatalf("the late create with the config it read put no fence in: %v", err)
	}
	c.p.late.mu.Lock()
	_, owned := c.p.late.owned[ctr.Id]
	c.p.late.mu.Unlock()
	if !owned {
		t.Error("the container is fenced, and the plugin does not run its poststop when it stops: the fence stays for good")
	}
}

// appliesUnderWay counts the goroutines of the plugin's applies, started
// or waiting their turn.
func (c configTest) appliesUnderWay() int {
	buf := make([]byte, 1<<22)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), fmt.Sprintf("nriplugin.(*Plugin).applyConfig(%p", c.p))
}

// waitGoroutines waits until n goroutines of the test binary are each in
// every function named (their stacks hold them all): blocked there, since
// a fixed sleep on a loaded machine may end before they get there, and the
// race a test sets up then never happens.
func waitGoroutines(t *testing.T, n int, funcs ...string) {
	t.Helper()
	buf := make([]byte, 1<<22)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
		in := 0
		for _, g := range stacks {
			if !slices.ContainsFunc(funcs, func(f string) bool { return !strings.Contains(g, f) }) {
				in++
			}
		}
		if in >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines in %s after a minute, not %d", in, strings.Join(funcs, " and "), n)
		}
	}
}

// Run follows the config file only while it runs: a pre-registered plugin
// returns when its connection ends, with its context still live, and the
// command then closes its log and exits; a poll left behind went on
// reading the config and applying it, and reopened the log Close closed.
func TestRunStopsFollowingTheConfigWhenItReturns(t *testing.T) {
	c, _ := newConfigTest(t, openConfig)
	c.p.opts.PreRegistered = true
	c.p.opts.SocketPath = filepath.Join(t.TempDir(), "no-runtime.sock")
	if err := c.p.Run(context.Background()); err == nil {
		t.Fatal("a pre-registered plugin with no runtime to connect to ran")
	}
	buf := make([]byte, 1<<22)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "nriplugin.(*Plugin).followConfig") {
		t.Errorf("the config is still followed after Run returned:\n%s", stacks)
	}
}

// Applies do not pile up while the config file keeps changing: each may
// wait for a fence's lock (a hook at work there) up to
// records.LockTimeout, and each load of a new config started one more,
// all waiting their turn. One waiting reads the config in force when its
// turn comes, so it is the only one needed; the fence still ends with the
// newest config.
func TestAppliesDoNotPileUp(t *testing.T) {
	c, _, pod := newOpenPlugin(t)
	unlock := pod.lockFence()
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	before := c.applies()
	c.load(t, openConfig)
	waitGoroutines(t, 1, "nriplugin.(*Plugin).applyConfig", "records.(*Store).Lock(")
	var tight *config.Config
	for i := range 6 {
		// Each a new file of another size: each a change the plugin sees.
		tight = c.load(t, strings.Repeat("\n", i))
	}
	if n := c.appliesUnderWay(); n > 2 {
		t.Errorf("%d applies of the config under way for 7 loads; want 2: one at the fence's lock, one waiting its turn", n)
	}
	unlock()
	unlock = nil
	c.waitApplies(t, 0, before+2)
	expectPolicyOf(t, c.stateDir, pod.ns, tight)
}
