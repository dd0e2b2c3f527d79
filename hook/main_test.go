// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// hookBin is the bypass-hook binary built for the tests that run it as a
// runtime would; empty without root.
var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

// env is one test's world: a config, a state directory and a hook log.
type env struct {
	t       *testing.T
	dir     string
	cfgPath string
	cfg     *config.Config
	log     *logrus.Logger
}

// newEnv writes a config: the lab's proxies (if lab is given), the backend,
// and extra YAML lines.
func newEnv(t *testing.T, lab *testnet.Lab, backend, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf("backend: %s\nstateDir: %s\nhookLog: %s\n", backend, filepath.Join(dir, "state"), filepath.Join(dir, "hook.log"))
	if lab != nil {
		y += fmt.Sprintf("proxies: [%q, %q]\n", lab.ProxyV4, lab.ProxyV6)
	}
	y += extra
	e := &env{t: t, dir: dir, cfgPath: filepath.Join(dir, "config.yaml")}
	if err := os.WriteFile(e.cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", y, err)
	}
	e.cfg = cfg
	e.log = logrus.New()
	e.log.SetOutput(io.Discard)
	if f, err := os.OpenFile(cfg.HookLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
		e.log.SetOutput(f)
		e.log.SetFormatter(&logrus.JSONFormatter{})
		t.Cleanup(func() { f.Close() })
	}
	return e
}

func (e *env) hook() *hook.Hook { return hook.New(e.cfg, e.log) }

func (e *env) create(st *specs.State) (hook.Result, error) {
	e.t.Helper()
	return e.hook().Create(st)
}

// poststop runs the poststop of the container with id, whose bundle is
// the one state() gives: a container is its id and its bundle.
func (e *env) poststop(id string) (hook.Result, error) {
	e.t.Helper()
	return e.hook().Poststop(&specs.State{ID: id, Status: specs.StateStopped, Bundle: testBundle})
}

func (e *env) records() []*records.Record {
	e.t.Helper()
	s, err := records.Open(e.cfg.StateDir)
	if err != nil {
		e.t.Fatal(err)
	}
	recs, err := s.All()
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func (e *env) hookLog() string {
	data, _ := os.ReadFile(e.cfg.HookLog)
	return string(data)
}

// runBin runs the hook binary as a runtime does: state on stdin, an empty
// environment but for the config, nothing read from stdout.
func (e *env) runBin(stage string, st specs.State, nsenter ...string) (code int, stderr string) {
	e.t.Helper()
	return runHookBin(e.t, e.cfgPath, stage, st, nsenter...)
}

func runHookBin(t *testing.T, cfgPath, stage string, st specs.State, nsenter ...string) (int, string) {
	t.Helper()
	if hookBin == "" {
		testnet.SkipOrFail(t, "the hook binary is built only as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The stages as runtimes run them: bypass-hook-oci, which the
	// registrations name.
	args := append(append([]string{}, nsenter...), testnet.OCIHook(hookBin), "--config", cfgPath, stage)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = []string{} // runtimes give hooks a bare environment: no PATH
	cmd.Stdin = strings.NewReader(stateJSON(st))
	var errb strings.Builder
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), errb.String()
	}
	t.Fatalf("running %v: %v", args, err)
	return -1, ""
}

func stateJSON(st specs.State) string {
	if st.Version == "" {
		st.Version = specs.Version
	}
	b, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// container is a stand-in for a container's first process: a sleep inside a
// namespace, killed at cleanup.
type container struct {
	id  string
	cmd *exec.Cmd
}

func startIn(t *testing.T, ns *testnet.Netns) *container {
	t.Helper()
	cmd := ns.Command(context.Background(), "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process in %s: %v", ns.Name, err)
	}
	c := &container{id: testnet.RandName("ctr-") + "0123456789", cmd: cmd}
	t.Cleanup(c.kill)
	waitNetns(t, cmd.Process.Pid, ns.Path)
	return c
}

// startUnshared runs a process in a namespace of its own that no path pins:
// the namespace dies with it, like one a runtime makes.
func startUnshared(t *testing.T) *container {
	t.Helper()
	testnet.RequireTools(t, "unshare")
	cmd := exec.Command("unshare", "--net", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &container{id: testnet.RandName("ctr-") + "unshared", cmd: cmd}
	t.Cleanup(c.kill)
	deadline := time.Now().Add(5 * time.Second)
	for {
		own, _ := os.Readlink("/proc/self/ns/net")
		got, _ := os.Readlink(netns.PidPath(cmd.Process.Pid))
		if got != "" && got != own {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare --net did not move pid %d into a namespace of its own", cmd.Process.Pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNetns waits until nsenter has moved pid into the namespace at path.
func waitNetns(t *testing.T, pid int, path string) {
	t.Helper()
	want, err := netns.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, err := netns.Stat(netns.PidPath(pid)); err == nil && got == want {
			// nsenter execs sleep after setns; wait for the exec too, so the
			// comm no longer says nsenter.
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not enter %s", pid, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *container) pid() int { return c.cmd.Process.Pid }

// testBundle is the bundle of every container of these tests; the hook
// reads no config.json there.
const testBundle = "/nonexistent-bundle"

func (c *container) state() *specs.State {
	return &specs.State{Version: specs.Version, ID: c.id, Status: specs.StateCreating, Pid: c.pid(), Bundle: testBundle}
}

func (c *container) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

func rulesIn(t *testing.T, ns *testnet.Netns) string {
	t.Helper()
	r, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func backends(t *testing.T) []string {
	names := backend.Names()
	if len(names) == 0 {
		t.Fatal("no backend built in")
	}
	return names
}

func nsOf(t *testing.T, ns *testnet.Netns) netns.Handle {
	t.Helper()
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	return netns.Handle{ID: id, Path: ns.Path}
}

// installed reports whether b's fence is in ns, whole or not.
func installed(b backend.Backend, ns netns.Handle) (bool, error) {
	seen, err := b.Inspect(ns)
	return seen.Present, err
}
