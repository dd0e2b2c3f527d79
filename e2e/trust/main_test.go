// SPDX-License-Identifier: Apache-2.0

// Package trust plays the attacker against the built bypass-hook binary: an
// unprivileged uid (65534, no capabilities) inside a namespace the hook
// fenced, and a careless operator who changes the fence's rules. Each test
// reproduces a hole of issue 10 and holds that it stays closed.
package trust

import (
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

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

// nobody is the attacker: uid 65534, no capabilities.
const nobody = 65534

const probeTimeout = 3 * time.Second

var backends = []string{"iptables", "nftables"}

// env is one fenced world: a config, its state directory and hook log.
type env struct {
	t       *testing.T
	cfgPath string
	hookLog string
}

func newEnv(t *testing.T, lab *testnet.Lab, backend, extra string) *env {
	t.Helper()
	if hookBin == "" {
		t.Skip("skipping: needs root (the hook binary is built only as root)")
	}
	dir := t.TempDir()
	e := &env{t: t, cfgPath: filepath.Join(dir, "config.yaml"), hookLog: filepath.Join(dir, "log", "hook.log")}
	y := fmt.Sprintf("backend: %s\nstateDir: %s\nhookLog: %s\nproxies: [%q, %q]\n%s",
		backend, filepath.Join(dir, "state"), e.hookLog, lab.ProxyV4, lab.ProxyV6, extra)
	if err := os.WriteFile(e.cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs the binary as a runtime runs a hook: a bare environment, stdin
// given, stdout read but never waited on for input.
func (e *env) run(stdin string, args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hookBin, append([]string{"--config", e.cfgPath}, args...)...)
	cmd.Env = []string{}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("running %s %v: %v", hookBin, args, err)
	}
	return code, out.String(), errb.String()
}

// container is a stand-in for a container's first process (a sleep in the
// namespace) with a bundle whose config.json names the namespace.
type container struct {
	id, bundle string
	pid        int
}

func startIn(t *testing.T, ns *testnet.Netns) *container {
	t.Helper()
	cmd := ns.Command(context.Background(), "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() })
	want, err := os.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if err == nil && os.SameFile(got, want) && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not enter %s", cmd.Process.Pid, ns.Path)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := &container{id: testnet.RandName("ctr-") + "0123456789", bundle: t.TempDir(), pid: cmd.Process.Pid}
	spec := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"sleep", "3600"}, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: ns.Path}}},
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *container) state(status specs.ContainerState) string {
	st := specs.State{Version: specs.Version, ID: c.id, Status: status, Pid: c.pid, Bundle: c.bundle}
	if status == specs.StateStopped {
		st.Pid = 0
	}
	b, _ := json.Marshal(st)
	return string(b)
}

// create runs the hook's create stage for c and fails the test unless it
// exits 0.
func (e *env) create(c *container) {
	e.t.Helper()
	if code, _, stderr := e.run(c.state(specs.StateCreating), "create"); code != 0 {
		e.t.Fatalf("create %s: exit %d: %s\nhook log:\n%s", c.id, code, stderr, e.log())
	}
	e.t.Cleanup(func() { e.run(c.state(specs.StateStopped), "poststop") })
}

func (e *env) log() string {
	b, _ := os.ReadFile(e.hookLog)
	return string(b)
}

// refusedAsNobody holds that a direct connection of the attacker to addr is
// refused at once.
func refusedAsNobody(t *testing.T, ns *testnet.Netns, addr string) {
	t.Helper()
	r := testnet.RunProbeAs(ns, nobody, testnet.Probe{Kind: testnet.ProbeTCP, Addr: addr, Timeout: probeTimeout})
	switch {
	case r.Err == nil:
		t.Errorf("uid %d: direct connect to %s got through; want ECONNREFUSED", nobody, addr)
	case !errors.Is(r.Err, syscall.ECONNREFUSED):
		t.Errorf("uid %d: direct connect to %s: %v; want ECONNREFUSED", nobody, addr, r.Err)
	}
}
