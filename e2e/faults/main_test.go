// SPDX-License-Identifier: Apache-2.0

// Package faults injects the faults a node meets into the built binaries
// (a hook, apply, the runtime wrapper or the monitor killed at any moment,
// a state directory full, read-only or gone,
// containers of one namespace racing, a lock held past the hook's deadline,
// a full conntrack table) and counts what each leaves behind. Each test
// logs its counts; the README's "Faults survived" table reports them.
package faults

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
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

var backends = []string{"nftables", "iptables"}

// env is one node: a config, its state directory and hook log.
type env struct {
	t        *testing.T
	cfgPath  string
	stateDir string
}

func newEnv(t *testing.T, backend string) *env {
	t.Helper()
	if hookBin == "" {
		t.Skip("skipping: needs root (the hook binary is built only as root)")
	}
	dir := t.TempDir()
	return newEnvIn(t, backend, filepath.Join(dir, "state"), filepath.Join(dir, "hook.log"))
}

func newEnvIn(t *testing.T, backend, stateDir, hookLog string) *env {
	t.Helper()
	e := &env{t: t, cfgPath: filepath.Join(t.TempDir(), "config.yaml"), stateDir: stateDir}
	y := fmt.Sprintf("backend: %s\nstateDir: %s\nhookLog: %s\nproxies: ['198.51.100.1:3128', '[2001:db8::1]:3128']\n", backend, stateDir, hookLog)
	if err := os.WriteFile(e.cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// hookCmd is bypass-hook-oci for one stage, as a runtime runs it.
func (e *env) hookCmd(ctx context.Context, stage string, st specs.State) *exec.Cmd {
	cmd := exec.CommandContext(ctx, testnet.OCIHook(hookBin), "--config", e.cfgPath, stage)
	cmd.Env = []string{}
	if st.Version == "" {
		st.Version = specs.Version
	}
	data, _ := json.Marshal(st)
	cmd.Stdin = bytes.NewReader(data)
	return cmd
}

// run runs a stage to its end: its exit code and standard error.
func (e *env) run(stage string, st specs.State) (int, string) {
	e.t.Helper()
	code, stderr, err := e.try(stage, st)
	if err != nil {
		e.t.Fatalf("running the hook's %s: %v", stage, err)
	}
	return code, stderr
}

// exitCode is run for another goroutine than the test's: -1 when the hook
// could not be run.
func (e *env) exitCode(stage string, st specs.State) int {
	code, stderr, err := e.try(stage, st)
	if err != nil || code != 0 {
		e.t.Errorf("the hook's %s: exit %d, %v: %s", stage, code, err, stderr)
	}
	if err != nil {
		return -1
	}
	return code
}

func (e *env) try(stage string, st specs.State) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := e.hookCmd(ctx, stage, st)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String(), nil
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String(), nil
	}
	return -1, "", err
}

// killedAfter starts a stage and SIGKILLs it after d (if it is still
// running): a runtime's timeout, the OOM killer. It reports whether the
// kill came before the hook's end.
func (e *env) killedAfter(stage string, st specs.State, d time.Duration) bool {
	e.t.Helper()
	return e.killAfter(e.hookCmd(context.Background(), stage, st), d)
}

func (e *env) killAfter(cmd *exec.Cmd, d time.Duration) bool {
	e.t.Helper()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false
	case <-time.After(d):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err := <-done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
	}
	return false
}

// cli runs the bypass-hook command with the env's config.
func (e *env) cli(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hookBin, append([]string{"--config", e.cfgPath}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// container is a stand-in for a container's first process, in ns.
type container struct {
	id  string
	cmd *exec.Cmd
}

const bundle = "/nonexistent-bundle"

func startIn(t *testing.T, ns *testnet.Netns) *container {
	t.Helper()
	cmd := ns.Command(context.Background(), "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &container{id: testnet.RandName("ctr-") + "0123456789", cmd: cmd}
	t.Cleanup(c.kill)
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, err := netns.Stat(netns.PidPath(cmd.Process.Pid)); err == nil && got == want {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) == "sleep" {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not enter %s", cmd.Process.Pid, ns.Path)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (c *container) state() specs.State {
	return specs.State{ID: c.id, Status: specs.StateCreating, Pid: c.cmd.Process.Pid, Bundle: bundle}
}

func (c *container) stopped() specs.State {
	return specs.State{ID: c.id, Status: specs.StateStopped, Bundle: bundle}
}

func (c *container) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

// fenced starts a container in a fresh namespace and runs its create to
// the end: a fenced container.
func (e *env) fenced(t *testing.T) (*testnet.Netns, *container) {
	t.Helper()
	ns := testnet.NewNetns(t)
	c := startIn(t, ns)
	if code, stderr := e.run("create", c.state()); code != 0 {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	return ns, c
}

// left is what a namespace and the state directory hold after a fault.
type left struct {
	fence      bool // a fence of either backend in the namespace
	record     bool // a record of the namespace
	incomplete bool // that record says a hook died while changing the rules
	tmp        int  // temporary files of interrupted writes
}

// unrecorded is the fault this suite exists for: rules that no record
// names, which status, the monitor, prune and poststop never see.
func (l left) unrecorded() bool { return l.fence && !l.record }

func (e *env) look(ns *testnet.Netns) left {
	e.t.Helper()
	dump, err := testnet.RulesIn(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := netns.Stat(ns.Path)
	if err != nil {
		e.t.Fatal(err)
	}
	l := left{fence: testnet.HasFence(dump)}
	data, err := os.ReadFile(filepath.Join(e.stateDir, id.Key()+".json"))
	if err == nil {
		l.record = true
		var r struct {
			Incomplete string `json:"incomplete"`
		}
		if json.Unmarshal(data, &r) == nil && r.Incomplete != "" {
			l.incomplete = true
		}
	}
	l.tmp = e.tmpFiles()
	return l
}

func (e *env) tmpFiles() int {
	n := 0
	_ = filepath.WalkDir(e.stateDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".tmp") {
			n++
		}
		return nil
	})
	return n
}

// stateFiles lists what the state directory holds but for the prune
// cursor and the index's mark: empty when nothing is left.
func (e *env) stateFiles() []string {
	var out []string
	_ = filepath.WalkDir(e.stateDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		switch filepath.Base(p) {
		case "prune.cursor", ".indexed":
			return nil
		}
		rel, _ := filepath.Rel(e.stateDir, p)
		out = append(out, rel)
		return nil
	})
	return out
}

// fullCreate times whole creates, each in a namespace of its own, and
// returns the median: the span a kill is swept across.
func (e *env) fullCreate() time.Duration {
	e.t.Helper()
	return fullSpan(func() time.Duration {
		ns := testnet.NewNetns(e.t)
		c := startIn(e.t, ns)
		start := time.Now()
		if code, stderr := e.run("create", c.state()); code != 0 {
			e.t.Fatalf("create: exit %d: %s", code, stderr)
		}
		took := time.Since(start)
		if code, stderr := e.run("poststop", c.stopped()); code != 0 {
			e.t.Fatalf("poststop: exit %d: %s", code, stderr)
		}
		return took
	})
}

// fullPoststop times whole poststops (the last owner's: the rules come
// out) and returns the median.
func (e *env) fullPoststop() time.Duration {
	e.t.Helper()
	return fullSpan(func() time.Duration {
		_, c := e.fenced(e.t)
		c.kill()
		start := time.Now()
		if code, stderr := e.run("poststop", c.stopped()); code != 0 {
			e.t.Fatalf("poststop: exit %d: %s", code, stderr)
		}
		return time.Since(start)
	})
}

// killedAfterCLI runs the bypass-hook command and SIGKILLs it after d;
// it reports whether the kill came before the command's end.
func (e *env) killedAfterCLI(d time.Duration, args ...string) bool {
	e.t.Helper()
	cmd := exec.Command(hookBin, append([]string{"--config", e.cfgPath}, args...)...)
	return e.killAfter(cmd, d)
}

// fullPrune times whole prunes that take out one fence whose container is
// gone, and returns the median.
func (e *env) fullPrune() time.Duration {
	e.t.Helper()
	return fullSpan(func() time.Duration {
		ns, c := e.fenced(e.t)
		c.kill()
		start := time.Now()
		if out, err := e.cli("prune", "--grace", "0"); err != nil {
			e.t.Fatalf("prune: %v\n%s", err, out)
		}
		took := time.Since(start)
		if l := e.look(ns); l.fence || l.record {
			e.t.Fatalf("prune left %+v", l)
		}
		return took
	})
}
