// SPDX-License-Identifier: Apache-2.0

package podman

// Regression tests for issue 10 ("Trust") with podman: the hooks.d file
// where podman reads it with no --hooks-dir at all (hole 7), a failed
// start's fence healed by prune (hole 8), and annotation keys in any case
// (hole 5).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// podman here needs limits runc may set (it has no CAP_SYS_RESOURCE over
// podman's defaults); tests that read podman's own containers.conf pass
// them on the command line rather than through CONTAINERS_CONF.
var ulimits = []string{"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"}

// hookCmd runs the built hook with an empty environment, as an operator's
// sudo would, and returns its exit code, stdout and stderr.
func hookCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(hookBin, args...)
	cmd.Env = []string{}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatalf("running %s %v: %v", hookBin, args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// lockDefaultHooksDir serialises the tests, of this and any concurrent run,
// that write the machine's own hooks directory, and refuses to run over a
// bypass-hook.json that a real installation put there.
func lockDefaultHooksDir(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/run/bypass-hook-e2e-hooksdir.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

// Hole 7: the README's registration, as written: `install hooks-dir` with
// no DIR, then `podman run` with no --hooks-dir (and no CONTAINERS_CONF):
// podman reads its own default and the container is fenced. A DIR that no
// installed engine reads is refused, not written in silence.
func TestPodmanDefaultHooksDir(t *testing.T) {
	e := setup(t, config.SelectAnnotated)
	p := newPodman(t, "")
	p.env = os.Environ() // podman's own containers.conf, not the test's
	lockDefaultHooksDir(t)

	// A directory no engine reads: refused, and nothing written.
	nobody := filepath.Join(t.TempDir(), "hooks.d")
	code, out, errOut := hookCmd(t, "install", "hooks-dir", nobody, "--binary", hookBin, "--config", e.cfgPath)
	t.Logf("install hooks-dir %s: exit %d\n%s%s", nobody, code, out, errOut)
	if code == 0 {
		t.Errorf("install hooks-dir into a directory no engine reads exited 0")
	}
	if !strings.Contains(errOut, "/usr/share/containers/oci/hooks.d") {
		t.Errorf("the refusal does not say where podman reads: %q", errOut)
	}
	if _, err := os.Stat(filepath.Join(nobody, "bypass-hook.json")); err == nil {
		t.Errorf("the refused hooks.d file was written")
	}

	// podman says where it reads hooks from; the README's command writes
	// there.
	probe, err := p.run(append(append([]string{"--log-level=debug", "run", "--rm", "--network", "none"}, ulimits...), image, "sleep", "0")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, probe)
	}
	var reads []string
	for _, line := range strings.Split(probe, "\n") {
		if _, dir, ok := strings.Cut(line, "reading hooks from "); ok {
			reads = append(reads, strings.Trim(dir, `"`))
		}
	}
	t.Logf("podman reads hooks from %v", reads)
	if len(reads) == 0 {
		t.Fatalf("podman --log-level=debug did not say where it reads hooks:\n%s", probe)
	}
	written := filepath.Join(reads[0], "bypass-hook.json")
	if _, err := os.Lstat(written); err == nil {
		t.Skipf("skipping: %s exists already (a real installation); not overwriting it", written)
	}
	made := missingDirs(reads[0])
	t.Cleanup(func() {
		os.Remove(written)
		for i := len(made) - 1; i >= 0; i-- {
			os.Remove(made[i])
		}
	})
	code, out, errOut = hookCmd(t, "install", "hooks-dir", "--binary", hookBin, "--config", e.cfgPath)
	t.Logf("install hooks-dir: exit %d\n%s%s", code, out, errOut)
	if code != 0 {
		t.Fatalf("install hooks-dir with no DIR exited %d", code)
	}
	if _, err := os.Stat(written); err != nil {
		t.Fatalf("install hooks-dir did not write where podman reads: %v", err)
	}

	ns := e.lab.AddClient(t)
	args := append([]string{"run", "--detach", "--network", "ns:" + ns.Path, "--annotation", config.AnnEnabled + "=true", "--cap-drop", "NET_RAW"}, ulimits...)
	id, err := p.run(append(args, image, "sleep", "1000")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, id)
	}
	if !fenced(t, ns.Netns) {
		t.Fatalf("podman with its default hooks directory started the container unfenced; hook log:\n%s", e.log())
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)
	if out, err := p.run("rm", "--force", "--time", "0", id); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fenced(t, ns.Netns) {
		t.Errorf("the fence stayed after podman rm; hook log:\n%s", e.log())
	}
}

// missingDirs lists dir and those of its parents that do not exist, top
// down: what writing into dir makes, for the cleanup to take away again.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		out = append([]string{d}, out...)
	}
	return out
}

// Hole 8: `podman run` of a command that does not exist fails after the
// createRuntime hook fenced the namespace, and podman never runs poststop.
// status marks the owner stale, and prune takes the fence out.
func TestPodmanFailedStartPrune(t *testing.T) {
	e := setup(t, config.SelectAll)
	p := newPodman(t, e.hooksDir)
	ns := e.lab.AddClient(t)

	out, err := p.run("run", "--network", "ns:"+ns.Path, image, "/bin/nonexistent-cmd")
	if err == nil {
		t.Fatalf("podman run of a command that does not exist succeeded:\n%s", out)
	}
	t.Logf("podman run: %v\n%s", err, out)
	if !fenced(t, ns.Netns) {
		t.Skipf("skipping: this podman left no fence after the failed start (hook log:\n%s)", e.log())
	}
	// The reproduction: the namespace outlives the failed container, fenced
	// for nobody.
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)

	code, stdout, stderr := hookCmd(t, "--config", e.cfgPath, "status", "--json")
	t.Logf("status --json: exit %d\n%s%s", code, stdout, stderr)
	var fences []struct {
		Owners []struct {
			ID    string `json:"id"`
			Stale bool   `json:"stale"`
		} `json:"owners"`
	}
	if err := json.Unmarshal([]byte(stdout), &fences); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if len(fences) != 1 || len(fences[0].Owners) != 1 || !fences[0].Owners[0].Stale {
		t.Errorf("status does not mark the failed container's owner stale: %+v", fences)
	}

	code, stdout, stderr = hookCmd(t, "--config", e.cfgPath, "prune", "--grace", "1s")
	t.Logf("prune --grace 1s: exit %d\n%s%s", code, stdout, stderr)
	if code != 0 {
		t.Errorf("prune exited %d", code)
	}
	if fenced(t, ns.Netns) {
		t.Errorf("prune left the fence of the failed container; hook log:\n%s", e.log())
	}
	if got := e.owners(t); len(got) != 0 {
		t.Errorf("records left after prune: %v", got)
	}
	testnet.ExpectOpen(t, ns.Netns, e.lab)
}

// Hole 5, hooks.d: the annotation key in other letters' case still fences
// under selection: annotated (the `when` pattern ignores case, and the
// hook matches keys without regard to case).
func TestPodmanAnnotationCase(t *testing.T) {
	e := setup(t, config.SelectAnnotated)
	p := newPodman(t, e.hooksDir)
	ns := e.lab.AddClient(t)
	id, _ := p.start(ns.Netns, "--annotation", "Bypass-Hook.IO/enabled=true")
	if !fenced(t, ns.Netns) {
		t.Fatalf("the container annotated Bypass-Hook.IO/enabled=true is not fenced; hook log:\n%s", e.log())
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)
	expectFenced(t, p, id, ns.Netns, e.lab)
}
