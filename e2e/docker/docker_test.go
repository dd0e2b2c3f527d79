// SPDX-License-Identifier: Apache-2.0

// Package docker tests the CDI registration end to end with Docker: a
// private Docker Engine with CDI (built by scripts/build-docker-deps.sh)
// reads the spec `bypass-hook install cdi` wrote, and containers run with
// `--device bypass-hook.io/fence=default` are fenced; the others are not.
//
// Containers run with `--network none`: the runtime makes their namespace,
// and the test wires it to testnet's lab with a veth afterwards (the fence
// covers every interface, those added later included). Docker's own
// networks, bridge and firewall are off; nothing touches the machine's
// Docker.
package docker

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

const image = "localhost/bypass-hook-e2e/busybox:docker"

type env struct {
	d        *daemon
	lab      *testnet.Lab
	cfgPath  string
	stateDir string
	hookLog  string
}

// setup starts the private daemon, writes a config for the lab's proxies
// with the given selection and installs the CDI spec for it with the
// hook's own `install cdi`, as an operator would.
func setup(t *testing.T, selection string) *env {
	t.Helper()
	d := startDaemon(t)
	if hookBin == "" {
		t.Skip("skipping: the hook binary is built only as root")
	}
	lab := testnet.NewLab(t)
	dir := t.TempDir()
	e := &env{d: d, lab: lab, cfgPath: filepath.Join(dir, "config.yaml"),
		stateDir: filepath.Join(dir, "state"), hookLog: filepath.Join(dir, "hook.log")}
	y := fmt.Sprintf("proxies: [%q, %q]\nselection: %s\nstateDir: %s\nhookLog: %s\n",
		lab.ProxyV4, lab.ProxyV6, selection, e.stateDir, e.hookLog)
	if err := os.WriteFile(e.cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hookBin, "install", "cdi", d.cdiDir, "--binary", hookBin, "--config", e.cfgPath)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install cdi: %v\n%s", err, out)
	}
	d.importBusybox(image)
	return e
}

// run starts a sleeping container without a network of Docker's, asking
// for the CDI device when device is not empty, and returns its id.
func (e *env) run(t *testing.T, device string) string {
	t.Helper()
	args := []string{"run", "--detach", "--network", "none"}
	if device != "" {
		args = append(args, "--device", config.CDIKind+"="+device)
	}
	began := time.Now()
	id := e.d.must(append(args, image, "sleep", "1000")...)
	t.Logf("docker run --detach (device %q): %v", device, time.Since(began))
	return id
}

// plug wires the running container's namespace into the lab and returns it.
func (e *env) plug(t *testing.T, id string) *testnet.Client {
	t.Helper()
	c := e.d.inspect(id)
	if !c.State.Running || c.State.Pid <= 0 {
		t.Fatalf("container %s is not running (pid %d)", short(id), c.State.Pid)
	}
	ns := &testnet.Netns{Name: "ctr-" + short(id), Path: fmt.Sprintf("/proc/%d/ns/net", c.State.Pid)}
	return e.lab.Plug(t, ns)
}

func (e *env) log() string {
	b, _ := os.ReadFile(e.hookLog)
	return string(b)
}

// owners lists the containers the state dir records as fenced.
func (e *env) owners(t *testing.T) []string {
	t.Helper()
	store, err := records.Open(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.All()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		for _, o := range r.Owners {
			ids = append(ids, o.ID)
		}
	}
	return ids
}

// expectOwners fails unless the records name exactly ids.
func (e *env) expectOwners(t *testing.T, what string, ids ...string) {
	t.Helper()
	got := e.owners(t)
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		t.Errorf("%s: records name %v, want %v; hook log:\n%s", what, got, want, e.log())
	}
}

func fenced(t *testing.T, ns *testnet.Netns) bool {
	t.Helper()
	rules, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return testnet.HasFence(rules)
}

// expectFenced: the namespace is fenced for both families
// (testnet.ExpectFenced), and the workload sees it too: wget through the
// proxy works, nc straight to the server is refused.
func (e *env) expectFenced(t *testing.T, id string, c *testnet.Client) {
	t.Helper()
	if !fenced(t, c.Netns) {
		t.Fatalf("container %s is not fenced; hook log:\n%s", short(id), e.log())
	}
	testnet.ExpectFenced(t, c.Netns, e.lab)
	out, err := e.d.docker("exec", "--env", "http_proxy=http://"+e.lab.ProxyV4, id, "wget", "-q", "-O", "-", e.lab.URLV4)
	if err != nil || strings.TrimSpace(out) != strings.TrimSpace(testnet.LabBody) {
		t.Errorf("wget through the proxy in the container: %v\n%s", err, out)
	}
	host, port, _ := strings.Cut(e.lab.TCPV4, ":")
	out, err = e.d.docker("exec", id, "nc", "-w", "3", host, port)
	if err == nil || !strings.Contains(out, "Connection refused") {
		t.Errorf("nc %s in the container: %v\n%s\nwant Connection refused", e.lab.TCPV4, err, out)
	}
}

// A container run with the device is fenced under selection: annotated,
// where Docker has no annotation to give; one without it is not, and the
// hook never runs for it. docker rm -f leaves nothing recorded.
func TestDockerCDIDevice(t *testing.T) {
	e := setup(t, config.SelectAnnotated)

	id := e.run(t, config.DeviceDefault)
	plain := e.run(t, "")
	c, pc := e.plug(t, id), e.plug(t, plain)

	if reqs := e.d.inspect(id).HostConfig.DeviceRequests; len(reqs) != 1 || reqs[0].Driver != "cdi" ||
		!slices.Equal(reqs[0].DeviceIDs, []string{config.CDIKind + "=" + config.DeviceDefault}) {
		t.Errorf("docker recorded the device request as %+v, want one cdi request for %s=%s", reqs, config.CDIKind, config.DeviceDefault)
	}
	e.expectFenced(t, id, c)
	if fenced(t, pc.Netns) {
		t.Errorf("the container without the device is fenced")
	}
	testnet.ExpectOpen(t, pc.Netns, e.lab)
	if strings.Contains(e.log(), plain) {
		t.Errorf("the hook ran for the container without the device:\n%s", e.log())
	}
	e.expectOwners(t, "two containers, one with the device", id)

	began := time.Now()
	e.d.must("rm", "--force", id, plain)
	t.Logf("docker rm --force of both: %v", time.Since(began))
	e.expectOwners(t, "after docker rm --force")
	if !strings.Contains(e.log(), `"stage":"poststop"`) {
		t.Errorf("no poststop in the hook log after docker rm --force:\n%s", e.log())
	}
	if out := e.d.must("ps", "-aq"); out != "" {
		t.Errorf("containers left: %s", out)
	}
}

// docker stop then start, and docker restart, run the container's process
// in a new namespace each time: it is fenced each time, and the record of
// the one before is gone (poststop ran when the container stopped).
func TestDockerStopStartRestart(t *testing.T) {
	e := setup(t, config.SelectAnnotated)
	id := e.run(t, config.DeviceDefault)
	e.expectFenced(t, id, e.plug(t, id))
	e.expectOwners(t, "after run", id)

	e.expectStopStartRestart(t, id)
	e.d.must("rm", "--force", id)
	e.expectOwners(t, "after docker rm --force")
}

// audit can only narrow: asking for it where the config enforces is
// refused, and the container does not start.
// expectStopStartRestart stops the fenced container id, starts it and
// restarts it: each start fences it again, and one record is left (no
// stale one of an earlier namespace). It returns the record store.
func (e *env) expectStopStartRestart(t *testing.T, id string) *records.Store {
	t.Helper()
	e.d.must("stop", "--time", "1", id)
	e.expectOwners(t, "after docker stop")
	e.d.must("start", id)
	e.expectFenced(t, id, e.plug(t, id))
	e.expectOwners(t, "after docker start", id)
	e.d.must("restart", "--time", "1", id)
	e.expectFenced(t, id, e.plug(t, id))
	e.expectOwners(t, "after docker restart", id)
	store, err := records.Open(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if recs, _ := store.All(); len(recs) != 1 {
		t.Errorf("%d records after restart, want 1 (no stale one of an earlier namespace)", len(recs))
	}
	return store
}

func TestDockerCDIAuditRefusedUnderEnforce(t *testing.T) {
	e := setup(t, config.SelectAnnotated)
	out, err := e.d.docker("run", "--network", "none", "--device", config.CDIKind+"="+config.DeviceAudit, image, "true")
	if err == nil {
		t.Fatalf("a container asking for %s=%s started under mode: enforce:\n%s", config.CDIKind, config.DeviceAudit, out)
	}
	t.Logf("docker run refused it: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "bypass-hook.io/fence=audit") {
		t.Errorf("docker run's error does not name the device:\n%s", out)
	}
	e.expectOwners(t, "after the refused run")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
