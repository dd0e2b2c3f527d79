// SPDX-License-Identifier: Apache-2.0

// Package podman tests the hooks.d registration end to end: podman 4 with
// runc as its runtime reads the file `bypass-hook install hooks-dir` wrote,
// and its containers join network namespaces of testnet's lab.
//
// Everything podman keeps (storage, state, its own temporary files) is in
// a temporary directory of the test; nothing touches the machine's podman.
package podman

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	"github.com/bypass-hook/bypass-hook/hook/records"
)

const runc = "/usr/sbin/runc"

var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

// podman runs podman with a private storage root, run root and temporary
// directory, runc as the runtime and the hooks directory of the test.
type podman struct {
	t      *testing.T
	global []string
	env    []string
}

const image = "localhost/bypass-hook-e2e/busybox:podman"

func newPodman(t *testing.T, hooksDir string) *podman {
	t.Helper()
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "podman", "conmon", "busybox", "tar")
	if _, err := os.Stat(runc); err != nil {
		t.Skipf("skipping: %s: %v (apt-get install runc)", runc, err)
	}
	if hookBin == "" {
		t.Skip("skipping: the hook binary is built only as root")
	}
	// podman refuses a run root longer than 50 characters: t.TempDir's
	// names grow with the test's.
	dir, err := os.MkdirTemp("", "bhp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "containers.conf")
	// No CAP_SYS_RESOURCE here: podman's default limits (nofile 1048576) are
	// above what runc may set, so keep to the usual ones.
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &podman{
		t: t,
		global: []string{
			"--root", filepath.Join(dir, "root"),
			"--runroot", filepath.Join(dir, "runroot"),
			"--tmpdir", filepath.Join(dir, "tmp"),
			"--storage-driver", "vfs",
			"--cgroup-manager", "cgroupfs",
			"--events-backend", "none",
			"--runtime", runc,
		},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
	if hooksDir != "" { // "": podman's own, from its config
		p.global = append(p.global, "--hooks-dir", hooksDir)
	}
	t.Cleanup(func() {
		if out, err := p.run("rm", "--all", "--force", "--time", "0"); err != nil {
			t.Errorf("podman rm --all: %v\n%s", err, out)
		}
		mounts, _ := os.ReadFile("/proc/self/mounts")
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir) {
				t.Errorf("podman left a mount behind: %s", line)
				syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	})

	// No registry is reachable: the image is a busybox-static root, imported.
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, _ := testnet.Tool("busybox")
	if out, err := exec.Command("cp", bb, filepath.Join(root, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, app := range []string{"sh", "sleep", "nc", "wget", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if out, err := p.run("import", tarball, image); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	return p
}

func (p *podman) run(args ...string) (string, error) {
	cmd := exec.Command("podman", append(slices.Clone(p.global), args...)...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// start runs a sleeping container in the namespace ns and returns its id
// and how long `podman run` took.
func (p *podman) start(ns *testnet.Netns, extra ...string) (string, time.Duration) {
	p.t.Helper()
	args := append([]string{"run", "--detach", "--network", "ns:" + ns.Path}, extra...)
	began := time.Now()
	id, err := p.run(append(args, image, "sleep", "1000")...)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, id)
	}
	return id, time.Since(began)
}

type env struct {
	lab      *testnet.Lab
	cfgPath  string
	stateDir string
	hookLog  string
	hooksDir string
}

// setup writes a config for the lab's proxies with the given selection and
// the hooks.d file for it, as an operator would.
func setup(t *testing.T, selection string) *env {
	t.Helper()
	testnet.RequireRoot(t)
	if hookBin == "" {
		t.Skip("skipping: the hook binary is built only as root")
	}
	lab := testnet.NewLab(t)
	dir := t.TempDir()
	e := &env{lab: lab, cfgPath: filepath.Join(dir, "config.yaml"), stateDir: filepath.Join(dir, "state"),
		hookLog: filepath.Join(dir, "hook.log"), hooksDir: filepath.Join(dir, "hooks.d")}
	y := fmt.Sprintf("proxies: [%q, %q]\nselection: %s\nstateDir: %s\nhookLog: %s\n",
		lab.ProxyV4, lab.ProxyV6, selection, e.stateDir, e.hookLog)
	if err := os.WriteFile(e.cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	// --force: no engine reads this directory but the podman of the test,
	// which is told with --hooks-dir.
	cmd := exec.Command(hookBin, "install", "hooks-dir", e.hooksDir, "--force", "--binary", hookBin, "--config", e.cfgPath)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install hooks-dir: %v\n%s", err, out)
	}
	return e
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

func fenced(t *testing.T, ns *testnet.Netns) bool {
	t.Helper()
	rules, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return testnet.HasFence(rules)
}

// expectFenced: the fence as the namespace sees it (testnet.ExpectFenced),
// and the workload inside the container sees it: wget through the proxy
// works, nc straight to the server is refused.
func expectFenced(t *testing.T, p *podman, id string, ns *testnet.Netns, lab *testnet.Lab) {
	t.Helper()
	testnet.ExpectFenced(t, ns, lab)
	out, err := p.run("exec", "--env", "http_proxy=http://"+lab.ProxyV4, id, "wget", "-q", "-O", "-", lab.URLV4)
	if err != nil || out != strings.TrimSpace(testnet.LabBody) {
		t.Errorf("wget through the proxy in the container: %v\n%s", err, out)
	}
	host, port, _ := strings.Cut(lab.TCPV4, ":")
	out, err = p.run("exec", id, "nc", "-w", "3", host, port)
	if err == nil || !strings.Contains(out, "Connection refused") {
		t.Errorf("nc %s in the container: %v\n%s\nwant Connection refused", lab.TCPV4, err, out)
	}
}

// With selection: annotated the hooks.d file matches only containers
// annotated bypass-hook.io/enabled=true: they are fenced, others are not
// (the hook does not even run for them). podman rm runs poststop, which
// takes the fence out of the namespace, which outlives the container here.
func TestPodmanAnnotated(t *testing.T) {
	e := setup(t, config.SelectAnnotated)
	p := newPodman(t, e.hooksDir)
	annotatedNS, plainNS := e.lab.AddClient(t), e.lab.AddClient(t)

	id, tFenced := p.start(annotatedNS.Netns, "--annotation", config.AnnEnabled+"=true")
	plain, tPlain := p.start(plainNS.Netns)
	t.Logf("podman run --detach: %v with the hook, %v without", tFenced, tPlain)

	if !fenced(t, annotatedNS.Netns) {
		t.Fatalf("the annotated container is not fenced; hook log:\n%s", e.log())
	}
	expectFenced(t, p, id, annotatedNS.Netns, e.lab)
	if fenced(t, plainNS.Netns) {
		t.Errorf("the container without the annotation is fenced")
	}
	testnet.ExpectOpen(t, plainNS.Netns, e.lab)
	host, port, _ := strings.Cut(e.lab.TCPV4, ":")
	if out, err := p.run("exec", plain, "nc", "-w", "3", host, port); err != nil {
		t.Errorf("nc in the container without the annotation: %v\n%s", err, out)
	}
	if got := e.owners(t); !slices.Equal(got, []string{id}) {
		t.Errorf("records name %v, want [%s]", got, id)
	}
	if strings.Contains(e.log(), plain) {
		t.Errorf("the hook ran for the container without the annotation:\n%s", e.log())
	}

	// podman runs poststop hooks itself (hooks.d poststop is an extension
	// stage there); podman 4.3 ran it as the container stopped, before rm.
	if out, err := p.run("stop", "--time", "0", id); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("after podman stop, the namespace is fenced: %v", fenced(t, annotatedNS.Netns))
	if out, err := p.run("rm", id); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fenced(t, annotatedNS.Netns) {
		t.Errorf("the fence stayed after podman rm; hook log:\n%s", e.log())
	}
	if got := e.owners(t); len(got) != 0 {
		t.Errorf("records left after podman rm: %v", got)
	}
	testnet.ExpectOpen(t, annotatedNS.Netns, e.lab)
}

// With selection: all every container is fenced, with no annotation; and
// podman rm --force of a running container takes the fence out too.
func TestPodmanSelectionAll(t *testing.T) {
	e := setup(t, config.SelectAll)
	p := newPodman(t, e.hooksDir)
	ns := e.lab.AddClient(t)

	id, _ := p.start(ns.Netns)
	if !fenced(t, ns.Netns) {
		t.Fatalf("not fenced under selection: all; hook log:\n%s", e.log())
	}
	expectFenced(t, p, id, ns.Netns, e.lab)
	if out, err := p.run("rm", "--force", "--time", "0", id); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fenced(t, ns.Netns) {
		t.Errorf("the fence stayed after podman rm --force; hook log:\n%s", e.log())
	}
	if got := e.owners(t); len(got) != 0 {
		t.Errorf("records left: %v", got)
	}
}
