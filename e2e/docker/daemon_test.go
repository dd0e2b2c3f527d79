// SPDX-License-Identifier: Apache-2.0

package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Where scripts/build-docker-deps.sh and build-k8s-deps.sh put the binaries.
const (
	envCache     = "BYPASS_HOOK_E2E_CACHE"
	defaultCache = "/var/cache/bypass-hook-e2e"
	envRequire   = "BYPASS_HOOK_E2E_REQUIRE"
)

// daemon is a Docker daemon of the test's own: its data root, exec root,
// socket, pid file, config file and CDI spec directory are in a temporary
// directory; no bridge, no iptables, no userland proxy. The CLI reaches it
// through DOCKER_HOST. The machine's daemon (if any) is never touched.
type daemon struct {
	t       *testing.T
	engine  engine
	dir     string // everything of this daemon
	cdiDir  string // --cdi-spec-dir
	config  string // --config-file: daemon.json
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	// containerd is the private containerd that dockerd is pointed at,
	// where dockerd would otherwise use the machine's.
	containerd       *exec.Cmd
	containerdExited chan struct{}
}

// engine is the Docker a daemon runs.
type engine struct {
	dockerd, docker string
	// path is dockerd's PATH: where it (and the containerd it starts)
	// find containerd, the shim and runc.
	path string
	cdi  bool // the engine reads CDI: --cdi-spec-dir
	// containerd is a containerd binary to start privately and point
	// dockerd at; "" lets dockerd start its own.
	containerd string
}

// cacheEngine is the Docker with CDI that scripts/build-docker-deps.sh
// builds into the cache.
func cacheEngine(bin string) engine {
	return engine{
		dockerd: filepath.Join(bin, "dockerd"), docker: filepath.Join(bin, "docker"),
		path: bin + ":/usr/sbin:/usr/bin:/sbin:/bin", cdi: true,
	}
}

// requireDeps finds the cached binaries, or skips (fails under
// BYPASS_HOOK_E2E_REQUIRE=1) saying what is missing and what builds it.
func requireDeps(t *testing.T) string {
	t.Helper()
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "needs root (it runs a Docker daemon and makes network namespaces)")
	}
	cache := os.Getenv(envCache)
	if cache == "" {
		cache = defaultCache
	}
	bin := filepath.Join(cache, "bin")
	var absent []string
	for _, b := range []string{"dockerd", "docker", "containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			absent = append(absent, b)
		}
	}
	if len(absent) > 0 {
		problems = append(problems, fmt.Sprintf("missing from %s: %s; build them with `make e2e-docker-deps` (from the repository root)",
			bin, strings.Join(absent, ", ")))
	}
	if len(problems) > 0 {
		msg := "e2e/docker: " + strings.Join(problems, "; ")
		if os.Getenv(envRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// startDaemon starts a private dockerd with CDI on and waits until it
// answers. It is stopped, and everything it made removed, at cleanup.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startEngine(t, cacheEngine(requireDeps(t)))
}

// startEngine starts a private dockerd of eng and waits until it answers.
func startEngine(t *testing.T, eng engine) *daemon {
	t.Helper()
	// A short path: containerd's sockets live under the exec root, and a
	// unix socket path has 108 bytes at most.
	dir, err := os.MkdirTemp("", "bhd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, engine: eng, dir: dir, cdiDir: filepath.Join(dir, "cdi"), exited: make(chan struct{}),
		logPath: filepath.Join(dir, "dockerd.log"), config: filepath.Join(dir, "daemon.json")}
	t.Cleanup(d.stop)
	if err := os.MkdirAll(d.cdiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A config file of its own, so the machine's /etc/docker/daemon.json
	// is not read. CDI is on by default from Docker 28.2; saying so makes
	// the test mean the same on 25 to 28.1.
	daemonJSON := `{}`
	if eng.cdi {
		daemonJSON = `{"features": {"cdi": true}}`
	}
	if err := os.WriteFile(d.config, []byte(daemonJSON+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	d.env = append(os.Environ(),
		"DOCKER_HOST=unix://"+sock,
		"DOCKER_CONFIG="+filepath.Join(dir, "client"), // the CLI's own config, not root's
		// dockerd starts containerd, the shim and runc from PATH.
		"PATH="+eng.path,
	)
	args := []string{
		"--config-file", d.config,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", "unix://" + sock,
		// Nothing on the host's network: no bridge, no firewall rules, no
		// forwarding sysctl, no proxies for published ports.
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
		"--ip-masq=false", "--userland-proxy=false",
		"--storage-driver", "vfs",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--log-level", "debug",
	}
	if eng.cdi {
		args = append(args, "--cdi-spec-dir", d.cdiDir)
	}
	if eng.containerd != "" {
		args = append(args, "--containerd", d.startContainerd())
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(eng.dockerd, args...)
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group: stopping it never signals the test.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := d.docker("version", "--format", "{{.Server.Version}}")
		if err == nil {
			t.Logf("private dockerd %s up in %s", strings.TrimSpace(out), dir)
			break
		}
		select {
		case <-d.exited:
			t.Fatalf("dockerd exited at start: %v\n%s", d.cmd.ProcessState, d.log(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s: %v\n%s", err, d.log(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

// docker runs the CLI against this daemon and returns its combined output.
func (d *daemon) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.engine.docker, args...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// must is docker that fails the test on error and returns the trimmed output.
func (d *daemon) must(args ...string) string {
	d.t.Helper()
	out, err := d.docker(args...)
	if err != nil {
		d.t.Fatalf("%v", err)
	}
	return strings.TrimSpace(out)
}

// inspect decodes `docker inspect` of one container.
func (d *daemon) inspect(id string) containerJSON {
	d.t.Helper()
	var cs []containerJSON
	if err := json.Unmarshal([]byte(d.must("inspect", id)), &cs); err != nil || len(cs) != 1 {
		d.t.Fatalf("docker inspect %s: %v (%d results)", id, err, len(cs))
	}
	return cs[0]
}

// containerJSON is the part of `docker inspect` the tests read.
type containerJSON struct {
	ID    string
	State struct {
		Running bool
		Pid     int
	}
	HostConfig struct {
		DeviceRequests []struct {
			Driver    string
			DeviceIDs []string
		}
	}
}

// importBusybox makes the image the tests run: busybox-static and its
// links, imported from a tar (no registry is reachable).
func (d *daemon) importBusybox(ref string) {
	d.t.Helper()
	bb, err := testnet.Tool("busybox")
	if err != nil {
		d.t.Skipf("skipping: %v (apt-get install busybox-static)", err)
	}
	root := filepath.Join(d.dir, "rootfs")
	for _, sub := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			d.t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", bb, filepath.Join(root, "bin", "busybox")).CombinedOutput(); err != nil {
		d.t.Fatalf("%v: %s", err, out)
	}
	for _, app := range []string{"sh", "sleep", "nc", "wget", "cat", "true"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			d.t.Fatal(err)
		}
	}
	tarball := filepath.Join(d.dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "--owner=0", "--group=0", "-cf", tarball, ".").CombinedOutput(); err != nil {
		d.t.Fatalf("tar: %v: %s", err, out)
	}
	d.must("import", "--change", "CMD [\"/bin/sh\"]", tarball, ref)
}

// startContainerd starts eng.containerd with a root, state and sockets of
// the daemon's own and no CRI, and returns its address. dockerd 20.10 uses
// the machine's containerd whenever its socket exists, which this keeps it
// from doing.
func (d *daemon) startContainerd() string {
	t := d.t
	cd := filepath.Join(d.dir, "containerd")
	if err := os.MkdirAll(cd, 0o711); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(cd, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), sock, sock+".ttrpc", filepath.Join(cd, "opt"))
	cfgPath := filepath.Join(cd, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(cd, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.containerd = exec.Command(d.engine.containerd, "--config", cfgPath)
	d.containerd.Env = []string{"PATH=" + d.engine.path}
	d.containerd.Stdout, d.containerd.Stderr = logf, logf
	d.containerd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.containerd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	d.containerdExited = make(chan struct{})
	go func() { d.containerd.Wait(); close(d.containerdExited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case <-d.containerdExited:
			b, _ := os.ReadFile(filepath.Join(cd, "containerd.log"))
			t.Fatalf("containerd exited at start: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd made no socket within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *daemon) stopContainerd() {
	if d.containerd == nil || d.containerd.Process == nil {
		return
	}
	d.containerd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.containerdExited:
	case <-time.After(30 * time.Second):
		d.t.Errorf("containerd did not stop within 30s of SIGTERM; killing it")
		syscall.Kill(-d.containerd.Process.Pid, syscall.SIGKILL)
		<-d.containerdExited
	}
}

func (d *daemon) log(lines int) string {
	b, _ := os.ReadFile(d.logPath)
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

// stop removes every container, stops the daemon (and the containerd it
// started), unmounts what it left and removes its directory.
func (d *daemon) stop() {
	t := d.t
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case <-d.exited:
		default:
			if ids, err := d.docker("ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
				if out, err := d.docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
					t.Errorf("removing the containers: %v\n%s", err, out)
				}
			}
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(30 * time.Second):
				t.Errorf("dockerd did not stop within 30s of SIGTERM; killing it\n%s", d.log(20))
				syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
				<-d.exited
			}
		}
	}
	d.stopContainerd()
	// dockerd stops the containerd it started; one left over is a bug here.
	if out, _ := exec.Command("pgrep", "-f", d.dir).Output(); len(out) > 0 {
		t.Errorf("processes of the private daemon are left: %s", strings.Fields(string(out)))
	}
	// Mounts under the daemon's directory are the daemon's own (dockerd
	// bind-mounts its data root onto itself, and leaves it on a stop): not
	// the product's to answer for, and cleaned up here so that the
	// directory can go. Only one that cannot be taken away fails the test.
	mounts, _ := os.ReadFile("/proc/self/mounts")
	var left []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], d.dir) {
			left = append(left, f[1])
		}
	}
	slices.SortFunc(left, func(a, b string) int { return len(b) - len(a) }) // the deepest first
	for _, mp := range left {
		t.Logf("unmounting what the private daemon left: %s", mp)
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			t.Errorf("unmounting %s, which the private daemon left: %v", mp, err)
		}
	}
	if t.Failed() {
		t.Logf("dockerd log (tail):\n%s", d.log(60))
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("removing %s: %v", d.dir, err)
	}
}
