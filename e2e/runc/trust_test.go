// SPDX-License-Identifier: Apache-2.0

package runc

// Regression tests for issue 10 ("Trust"): each plays the attacker (a
// crafted OCI state on the hook's stdin, a planted symlink, a tenant's
// annotation) against the built hook and real runc containers, and checks
// from inside the fenced namespace, as uid 65534 with no capabilities,
// that the fence still refuses.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// trustEnv is a config for the lab's proxies with its own state dir and
// hook log.
type trustEnv struct {
	lab      *testnet.Lab
	dir      string
	cfgPath  string
	stateDir string
	hookLog  string
}

func newTrustEnv(t *testing.T, extra string) *trustEnv {
	t.Helper()
	testnet.RequireRoot(t)
	if hookBin == "" {
		t.Skip("skipping: the hook binary is built only as root")
	}
	e := &trustEnv{lab: testnet.NewLab(t), dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "config.yaml")
	e.stateDir = filepath.Join(e.dir, "state")
	e.hookLog = filepath.Join(e.dir, "hook.log")
	e.writeConfig(t, extra)
	return e
}

func (e *trustEnv) writeConfig(t *testing.T, extra string) {
	t.Helper()
	cfg := fmt.Sprintf("proxies: [%q, %q]\nstateDir: %s\nhookLog: %s\n%s",
		e.lab.ProxyV4, e.lab.ProxyV6, e.stateDir, e.hookLog, extra)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// hooks registers the hook for both stages, as `install bundle` does.
func (e *trustEnv) hooks() *specs.Hooks {
	return &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", e.cfgPath, "create"}}},
		Poststop:      []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", e.cfgPath, "poststop"}}},
	}
}

// runStage runs `bypass-hook STAGE` with state on stdin and an empty
// environment, as a runtime would, and returns the exit code and stderr.
func (e *trustEnv) runStage(t *testing.T, stage string, st specs.State) (int, string) {
	t.Helper()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hookBin, "--config", e.cfgPath, stage)
	cmd.Env = []string{}
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	}
	t.Fatalf("running bypass-hook %s: %v", stage, err)
	return 0, ""
}

func (e *trustEnv) log() string {
	b, _ := os.ReadFile(e.hookLog)
	return string(b)
}

// startFenced runs a container with the hooks in ns under runc root of its
// own (the bundle's), and checks that it is fenced.
func (e *trustEnv) startFenced(t *testing.T, ns *testnet.Netns, id string) *testnet.Bundle {
	t.Helper()
	b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: ns.Path, Hooks: e.hooks()})
	if err := b.Create(t, id); err != nil {
		t.Fatalf("%v\nhook log:\n%s", err, e.log())
	}
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	testnet.ExpectRefusedAs(t, ns, e.lab, testnet.Nobody)
	if t.Failed() {
		t.Fatalf("container %s in %s is not fenced; hook log:\n%s", id, ns.Name, e.log())
	}
	return b
}

// Hole 1: a container is its id and its bundle. Two runtimes (two runc
// roots here) each have a container of one name; the poststop of the one
// must never unfence the other.
func TestTrustPoststopMatchesBundle(t *testing.T) {
	// A poststop with A's id and another bundle, for a container that was
	// never fenced (a second runtime's "web"), as a runtime sends it.
	t.Run("crafted poststop of another bundle", func(t *testing.T) {
		e := newTrustEnv(t, "")
		nsA := e.lab.AddClient(t)
		id := testnet.RandName("web-")
		e.startFenced(t, nsA.Netns, id)

		other := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: nsA.Path})
		code, stderr := e.runStage(t, "poststop", specs.State{Version: specs.Version, ID: id, Status: specs.StateStopped, Bundle: other.Dir})
		t.Logf("poststop of %s with bundle %s: exit %d %s", id, other.Dir, code, stderr)
		testnet.ExpectRefusedAs(t, nsA.Netns, e.lab, testnet.Nobody)
		if t.Failed() {
			t.Logf("hook log:\n%s", e.log())
		}
	})

	// B has A's id under another runc root and joins A's namespace (a
	// second runtime's "web" in a shared namespace). B's own, real
	// poststop must leave A's fence in place: A still runs there.
	t.Run("same id joins, then stops", func(t *testing.T) {
		e := newTrustEnv(t, "")
		ns := e.lab.AddClient(t)
		id := testnet.RandName("web-")
		a := e.startFenced(t, ns.Netns, id)
		b := e.startFenced(t, ns.Netns, id)
		if a.Root == b.Root {
			t.Fatalf("the two containers share the runc root %s", a.Root)
		}
		if err := b.Delete(t); err != nil {
			t.Fatal(err)
		}
		if out, err := a.Runc("state", id); err != nil || !strings.Contains(out, `"running"`) {
			t.Fatalf("container A is not running any more: %v %s", err, out)
		}
		testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)
		if t.Failed() {
			t.Logf("hook log:\n%s", e.log())
		}
	})
}

// Hole 4: with hookLog in a directory others may write to, a symlink
// planted there must not make the root hook write through it: the target
// stays as it was, the hook says on stderr that it logs nowhere, and it
// still fences.
func TestTrustHookLogSymlink(t *testing.T) {
	e := newTrustEnv(t, "")
	open := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o1777); err != nil { // as /tmp: sticky, world-writable
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "shadow")
	const secret = "root:$y$j9T$notreally:19000:0:99999:7:::\n"
	if err := os.WriteFile(victim, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(open, "hook.log")
	if err := os.Symlink(victim, planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(planted, testnet.Nobody, testnet.Nobody); err != nil { // the attacker's link
		t.Fatal(err)
	}
	e.hookLog = planted
	e.writeConfig(t, "")

	ns := e.lab.AddClient(t)
	id := testnet.RandName("chosen-by-the-attacker-")
	code, stderr := e.runStage(t, "poststop", specs.State{Version: specs.Version, ID: id, Status: specs.StateStopped, Bundle: t.TempDir()})
	t.Logf("poststop: exit %d, stderr: %s", code, stderr)
	if code != 0 {
		t.Errorf("poststop with nothing to do exited %d", code)
	}
	if !strings.Contains(stderr, planted) {
		t.Errorf("stderr does not name the refused hook log %s: %q", planted, stderr)
	}

	// The hook still fences, and logs nowhere.
	b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: ns.Path, Hooks: e.hooks()})
	if err := b.Create(t, testnet.RandName("log-")); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)

	if got, _ := os.ReadFile(victim); string(got) != secret {
		t.Errorf("the file behind the planted symlink changed:\n%s", got)
	}
	if fi, err := os.Lstat(planted); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the planted symlink was replaced: %v %v", fi, err)
	}
}

// Hole 5: annotation keys match without regard to case, and a near miss
// of the prefix is refused, never ignored, under selection: annotated.
func TestTrustAnnotationKeys(t *testing.T) {
	e := newTrustEnv(t, "selection: annotated\n")

	for _, key := range []string{"Bypass-Hook.io/enabled", "BYPASS-HOOK.IO/ENABLED"} {
		t.Run(key, func(t *testing.T) {
			ns := e.lab.AddClient(t)
			b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: ns.Path, Hooks: e.hooks(),
				Annotations: map[string]string{key: "true"}})
			if err := b.Create(t, testnet.RandName("case-")); err != nil {
				t.Fatalf("%v\nhook log:\n%s", err, e.log())
			}
			if err := b.Start(t); err != nil {
				t.Fatal(err)
			}
			testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)
		})
	}

	for _, key := range []string{"bypass-hook.io.enabled", "bypass_hook.io/enabled", "Bypass-Hook.IO.Enabled", "bypas-hook.io/enabled"} {
		t.Run(key, func(t *testing.T) {
			ns := e.lab.AddClient(t)
			b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: ns.Path, Hooks: e.hooks(),
				Annotations: map[string]string{key: "true"}})
			err := b.Create(t, testnet.RandName("near-"))
			if err == nil {
				testnet.ExpectOpen(t, ns.Netns, e.lab)
				t.Fatalf("the container with %s=true started (unfenced); want the hook to refuse the near miss", key)
			}
			if !strings.Contains(err.Error(), key) {
				t.Errorf("runc create failed without naming %s: %v", key, err)
			}
		})
	}
}

// Hole 8 with runc: a container whose runtime never runs poststop (here a
// bundle with no poststop hook, as a podman whose start failed) leaves its
// fence to an owner whose process is gone. prune leaves a running owner's
// fence alone; status marks the dead one stale; the monitor, as it runs,
// takes the fence out after the grace period.
func TestTrustStaleOwnerPrunedByMonitor(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	hooks := e.hooks()
	hooks.Poststop = nil
	b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: ns.Path, Hooks: hooks})
	if err := b.Create(t, testnet.RandName("stale-")); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)

	// A running owner is not stale: prune, even with no grace, keeps it.
	if code, out := e.cli(t, "prune", "--grace", "0s"); code != 0 || !fencedNs(t, ns.Netns) {
		t.Fatalf("prune with a running owner: exit %d, fenced %v\n%s", code, fencedNs(t, ns.Netns), out)
	}
	if stale := e.staleOwners(t); len(stale) != 0 {
		t.Errorf("a running owner is marked stale: %v", stale)
	}

	// The process dies and no poststop comes.
	if out, err := b.Runc("kill", b.ID, "KILL"); err != nil {
		t.Fatalf("runc kill: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.staleOwners(t)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if stale := e.staleOwners(t); len(stale) != 1 || stale[0] != b.ID {
		t.Fatalf("status marks %v stale, want [%s]", stale, b.ID)
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody) // still fenced: the reproduction

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := exec.CommandContext(ctx, hookBin, "--config", e.cfgPath, "monitor", "--metrics-addr", "", "--resync", "300ms", "--prune-grace", "1s")
	monLog := filepath.Join(t.TempDir(), "monitor.log")
	f, err := os.Create(monLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mon.Stderr = f
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer mon.Wait()
	logged := func() string { b, _ := os.ReadFile(monLog); return string(b) }
	records := func() []string { r, _ := filepath.Glob(filepath.Join(e.stateDir, "netns-*.json")); return r }
	deadline = time.Now().Add(20 * time.Second)
	for (fencedNs(t, ns.Netns) || len(records()) > 0 || !strings.Contains(logged(), "pruned a fence")) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if fencedNs(t, ns.Netns) {
		t.Fatalf("the monitor did not prune the stale fence; its log:\n%s", logged())
	}
	if !strings.Contains(logged(), "pruned a fence") {
		t.Errorf("the monitor did not log the prune:\n%s", logged())
	}
	if r := records(); len(r) != 0 {
		t.Errorf("records left after the prune: %v", r)
	}
	testnet.ExpectOpen(t, ns.Netns, e.lab)
}

// cli runs a bypass-hook command with the env's config and returns its exit
// code and combined output.
func (e *trustEnv) cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(hookBin, append([]string{"--config", e.cfgPath}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// staleOwners lists the owners `status --json` marks stale.
func (e *trustEnv) staleOwners(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command(hookBin, "--config", e.cfgPath, "status", "--json")
	out, _ := cmd.Output() // exit 1 when counters cannot be read; the JSON is there
	var fences []struct {
		Owners []struct {
			ID    string `json:"id"`
			Stale bool   `json:"stale"`
		} `json:"owners"`
	}
	if err := json.Unmarshal(out, &fences); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	var ids []string
	for _, f := range fences {
		for _, o := range f.Owners {
			if o.Stale {
				ids = append(ids, o.ID)
			}
		}
	}
	return ids
}

func fencedNs(t *testing.T, ns *testnet.Netns) bool {
	t.Helper()
	rules, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return testnet.HasFence(rules)
}
