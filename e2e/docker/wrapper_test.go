// SPDX-License-Identifier: Apache-2.0

package docker

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// The runtime wrapper end to end with Debian 12's own Docker (docker.io
// 20.10, which reads no CDI): a private dockerd and containerd from the
// distribution's binaries, the wrapper registered with `install
// docker-runtime` into the private daemon.json, containers opting in by
// environment variable.

// debianEngine is Debian's docker.io with a private containerd of
// Debian's: dockerd 20.10 would use the machine's containerd, whose socket
// exists, were it not pointed at one of its own.
func debianEngine(t *testing.T) engine {
	t.Helper()
	var absent []string
	for _, b := range []string{"/usr/sbin/dockerd", "/usr/bin/docker", "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc"} {
		if _, err := os.Stat(b); err != nil {
			absent = append(absent, b)
		}
	}
	if os.Geteuid() != 0 {
		absent = append(absent, "root")
	}
	if len(absent) > 0 {
		msg := "e2e/docker: Debian's Docker needs " + strings.Join(absent, ", ") + " (apt-get install docker.io)"
		if os.Getenv(envRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return engine{dockerd: "/usr/sbin/dockerd", docker: "/usr/bin/docker", path: "/usr/sbin:/usr/bin:/sbin:/bin", containerd: "/usr/bin/containerd"}
}

// machineDocker is what the test must leave as it was: the machine's own
// Docker daemon (its process, its identity and runtimes, its config file,
// its containers).
type machineDocker struct {
	pid, info, daemonJSON string
	containers            string
}

func snapshotMachineDocker(t *testing.T) machineDocker {
	t.Helper()
	var m machineDocker
	pid, _ := os.ReadFile("/var/run/docker.pid")
	m.pid = strings.TrimSpace(string(pid))
	if b, err := os.ReadFile("/etc/docker/daemon.json"); err == nil {
		m.daemonJSON = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	if m.pid == "" {
		return m
	}
	cli := []string{"-H", "unix:///var/run/docker.sock"}
	out, err := exec.Command("/usr/bin/docker", append(cli, "info", "--format", "{{.ID}} {{json .Runtimes}} {{.DefaultRuntime}}")...).Output()
	if err == nil {
		m.info = strings.TrimSpace(string(out))
	}
	out, err = exec.Command("/usr/bin/docker", append(cli, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}}")...).Output()
	if err == nil {
		m.containers = strings.TrimSpace(string(out))
	}
	return m
}

// setupWrapper starts eng's private daemon, writes a config for the lab's
// proxies with the selection given and registers the wrapper with the
// CLI's `install docker-runtime`, as an operator would, then reloads the
// daemon with SIGHUP as `systemctl reload docker` does.
func setupWrapper(t *testing.T, eng engine, selection string, extra ...string) *env {
	t.Helper()
	d := startEngine(t, eng)
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
	cmd := exec.Command(hookBin, append([]string{"install", "docker-runtime", "--daemon-json", d.config, "--config", e.cfgPath}, extra...)...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install docker-runtime: %v\n%s", err, out)
	}
	t.Logf("install docker-runtime:\n%s", out)
	if !strings.Contains(string(out), "systemctl reload docker") {
		t.Errorf("install docker-runtime does not say how to reload Docker:\n%s", out)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.must("info", "--format", "{{json .Runtimes}}"), `"bypass-hook"`) {
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not take the runtime after SIGHUP:\n%s", d.log(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.importBusybox(image)
	return e
}

// runWrapped starts a sleeping container under the wrapper with the
// environment given, without a network of Docker's.
func (e *env) runWrapped(t *testing.T, envs ...string) (string, error) {
	t.Helper()
	return e.runWrappedNamed(t, "", envs...)
}

func (e *env) runWrappedNamed(t *testing.T, name string, envs ...string) (string, error) {
	t.Helper()
	// Docker 20.10 turns IPv6 off in a namespace of its own making; the
	// lab wires both families.
	args := []string{"run", "--detach", "--network", "none", "--runtime", "bypass-hook",
		"--sysctl", "net.ipv6.conf.all.disable_ipv6=0", "--sysctl", "net.ipv6.conf.default.disable_ipv6=0"}
	if name != "" {
		args = append(args, "--name", name)
	}
	for _, v := range envs {
		args = append(args, "--env", v)
	}
	out, err := e.d.docker(append(args, image, "sleep", "1000")...)
	return strings.TrimSpace(out), err
}

func (e *env) mustRunWrapped(t *testing.T, envs ...string) string {
	t.Helper()
	id, err := e.runWrapped(t, envs...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Docker 20.10 with the wrapper: a container that opts in by environment
// variable is fenced (the proxy works, direct connections over both
// families are refused and logged), one that does not is not, a misspelt
// variable is refused with a message that names it; stop, start and
// restart fence again with one record; rm -f leaves nothing; the machine's
// own Docker is as it was.
func TestDocker20WrapperEnvOptIn(t *testing.T) {
	before := snapshotMachineDocker(t)
	e := setupWrapper(t, debianEngine(t), config.SelectAnnotated)
	testnet.KernelNetnsLog(t)
	kmsg := testnet.OpenKmsg(t)
	t.Logf("engine: Docker %s", e.d.must("version", "--format", "{{.Server.Version}}"))

	id := e.mustRunWrapped(t, config.EnvEnabled+"=true")
	plain := e.mustRunWrapped(t)
	c, pc := e.plug(t, id), e.plug(t, plain)
	e.expectFenced(t, id, c)
	if fenced(t, pc.Netns) {
		t.Errorf("the container that did not opt in is fenced")
	}
	testnet.ExpectOpen(t, pc.Netns, e.lab)
	e.expectOwners(t, "one container opted in, one not", id)

	_, port, _ := net.SplitHostPort(e.lab.TCPV4)
	if line, err := kmsg.Wait(10*time.Second, rules.LogPrefix("bypass", id), "DST="+e.lab.ServerV4.String(), "DPT="+port, "PROTO=TCP"); err != nil {
		t.Errorf("log line of the refused attempt: %v", err)
	} else {
		t.Logf("kernel log: %s", line)
	}

	// A near miss never starts unfenced: docker run fails and says why.
	out, err := e.runWrappedNamed(t, "nearmiss", "BYPASS-HOOK_ENABLED=true")
	e.d.docker("rm", "--force", "nearmiss")
	if err == nil {
		t.Errorf("a container with a misspelt opt-in started: %s", out)
	} else if !strings.Contains(out, "BYPASS-HOOK_ENABLED") || !strings.Contains(out, "misspelling") {
		t.Errorf("docker run's error does not name the misspelt variable:\n%s", out)
	} else {
		t.Logf("near miss refused: %s", out)
	}

	store := e.expectStopStartRestart(t, id)

	e.d.must("rm", "--force", id, plain)
	e.expectOwners(t, "after docker rm --force")
	if recs, _ := store.All(); len(recs) != 0 {
		t.Errorf("%d records left after docker rm --force", len(recs))
	}
	if out := e.d.must("ps", "-aq"); out != "" {
		t.Errorf("containers left: %s", out)
	}

	after := snapshotMachineDocker(t)
	if before.pid != after.pid || before.info != after.info || before.daemonJSON != after.daemonJSON {
		t.Errorf("the machine's Docker changed: before %+v, after %+v", before, after)
	}
	if strings.Contains(after.containers, image) || strings.Contains(after.containers, id) {
		t.Errorf("the machine's Docker has the test's containers:\n%s", after.containers)
	}
	if before.containers != after.containers {
		t.Logf("the machine's containers changed during the test (another user's?):\nbefore %s\nafter %s", before.containers, after.containers)
	}
}

// Under selection: all no opt-in is needed, and a container cannot opt
// out: BYPASS_HOOK_ENABLED=false is refused.
func TestDocker20WrapperSelectionAll(t *testing.T) {
	e := setupWrapper(t, debianEngine(t), config.SelectAll)
	id := e.mustRunWrapped(t)
	e.expectFenced(t, id, e.plug(t, id))
	out, err := e.runWrappedNamed(t, "optout", config.EnvEnabled+"=false")
	e.d.docker("rm", "--force", "optout")
	if err == nil || !strings.Contains(out, "selection: all") {
		t.Errorf("opting out under selection: all: %v\n%s", err, out)
	}
	e.d.must("rm", "--force", id)
	e.expectOwners(t, "after docker rm --force")
}

// Under a Docker that reads CDI (the private Engine 29 line), the runtime
// wrapper with BYPASS_HOOK_ENABLED=true gives what the CDI device gives:
// fenced alike, with the same policy; a container with both gets the hook
// once (the wrapper leaves the CDI device's hook alone).
func TestDockerWrapperSameAsCDI(t *testing.T) {
	bin := requireDeps(t)
	e := setupWrapper(t, cacheEngine(bin), config.SelectAnnotated, "--runtime", filepath.Join(bin, "runc"))
	cmd := exec.Command(hookBin, "install", "cdi", e.d.cdiDir, "--binary", testnet.OCIHook(hookBin), "--config", e.cfgPath)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install cdi: %v\n%s", err, out)
	}
	t.Logf("engine: Docker %s", e.d.must("version", "--format", "{{.Server.Version}}"))

	viaCDI := e.run(t, config.DeviceDefault)
	viaWrapper := e.mustRunWrapped(t, config.EnvEnabled+"=true")
	both := e.d.must("run", "--detach", "--network", "none", "--runtime", "bypass-hook", "--env", config.EnvEnabled+"=true",
		"--device", config.CDIKind+"="+config.DeviceDefault, image, "sleep", "1000")
	for _, id := range []string{viaCDI, viaWrapper, both} {
		e.expectFenced(t, id, e.plug(t, id))
	}
	e.expectOwners(t, "three containers, by CDI, by the wrapper and by both", viaCDI, viaWrapper, both)

	store, err := records.Open(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.All()
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, r := range recs {
		for _, o := range r.Owners {
			digests[o.ID] = r.Digest + " " + r.Backend
		}
	}
	if digests[viaCDI] == "" || digests[viaCDI] != digests[viaWrapper] || digests[viaCDI] != digests[both] {
		t.Errorf("the fences differ: CDI %q, wrapper %q, both %q", digests[viaCDI], digests[viaWrapper], digests[both])
	}
	creates := 0
	for _, line := range strings.Split(e.log(), "\n") {
		if strings.Contains(line, both) && strings.Contains(line, `"stage":"create"`) && strings.Contains(line, `"exit"`) {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("the hook's create ran %d times for the container with both the device and the wrapper, want 1:\n%s", creates, e.log())
	}
	e.d.must("rm", "--force", viaCDI, viaWrapper, both)
	e.expectOwners(t, "after docker rm --force")
}
