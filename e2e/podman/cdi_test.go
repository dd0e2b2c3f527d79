// SPDX-License-Identifier: Apache-2.0

package podman

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// podmanCDIDir is where the test puts the spec: podman 4.3 reads CDI specs from /etc/cdi and
// /var/run/cdi only (no setting names others), and the second wins over the first.
const podmanCDIDir = "/var/run/cdi"

// installCDI writes the spec for cfgPath into podmanCDIDir with `bypass-hook install cdi`, as
// an operator would, and takes it out again at cleanup, putting back a spec of the same name
// that was there before. A lock keeps two test runs on this machine from sharing the file.
func installCDI(t *testing.T, cfgPath string) {
	t.Helper()
	if err := os.MkdirAll(podmanCDIDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile("/run/lock/bypass-hook-e2e-cdi.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(podmanCDIDir, install.CDIFileName)
	before, err := os.ReadFile(path)
	had := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if had {
			if err := os.WriteFile(path, before, 0o644); err != nil {
				t.Errorf("putting back %s: %v", path, err)
			}
		} else if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("removing %s: %v", path, err)
		}
		lock.Close()
	})
	cmd := exec.Command(hookBin, "install", "cdi", podmanCDIDir, "--binary", hookBin, "--config", cfgPath)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install cdi: %v\n%s", err, out)
	}
}

// podman run --device bypass-hook.io/fence=default fences the container under selection:
// annotated with no annotation and no hooks.d file (the hooks directory podman is given is
// empty); a container without the device is not fenced, and podman rm takes the fence out.
func TestPodmanCDIDevice(t *testing.T) {
	e := setup(t, config.SelectAnnotated)
	installCDI(t, e.cfgPath)
	p := newPodman(t, t.TempDir())
	deviceNS, plainNS := e.lab.AddClient(t), e.lab.AddClient(t)

	id, tFenced := p.start(deviceNS.Netns, "--device", config.CDIKind+"="+config.DeviceDefault)
	plain, tPlain := p.start(plainNS.Netns)
	t.Logf("podman run --detach: %v with the device, %v without", tFenced, tPlain)

	if !fenced(t, deviceNS.Netns) {
		t.Fatalf("the container with the device is not fenced; hook log:\n%s", e.log())
	}
	expectFenced(t, p, id, deviceNS.Netns, e.lab)
	if fenced(t, plainNS.Netns) {
		t.Errorf("the container without the device is fenced")
	}
	testnet.ExpectOpen(t, plainNS.Netns, e.lab)
	if got := e.owners(t); !slices.Equal(got, []string{id}) {
		t.Errorf("records name %v, want [%s]", got, id)
	}
	if strings.Contains(e.log(), plain) {
		t.Errorf("the hook ran for the container without the device:\n%s", e.log())
	}

	if out, err := p.run("rm", "--force", "--time", "0", id); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fenced(t, deviceNS.Netns) {
		t.Errorf("the fence stayed after podman rm; hook log:\n%s", e.log())
	}
	if got := e.owners(t); len(got) != 0 {
		t.Errorf("records left after podman rm: %v", got)
	}
	testnet.ExpectOpen(t, deviceNS.Netns, e.lab)
}

// `make install` writes both registrations. Under selection: all a container that also asks
// for the device gets the hook twice, from hooks.d and from CDI: the two agree (the device's
// policy is the config's), so it is fenced once with one owner, and podman rm leaves nothing.
func TestPodmanCDIHooksd(t *testing.T) {
	e := setup(t, config.SelectAll)
	installCDI(t, e.cfgPath)
	p := newPodman(t, e.hooksDir)
	ns := e.lab.AddClient(t)

	id, _ := p.start(ns.Netns, "--device", config.CDIKind+"="+config.DeviceDefault)
	expectFenced(t, p, id, ns.Netns, e.lab)
	if got := e.owners(t); !slices.Equal(got, []string{id}) {
		t.Errorf("records name %v, want [%s] once", got, id)
	}
	if n := strings.Count(e.log(), `"stage":"create"`); n < 2 {
		t.Errorf("the create stage ran %d times, want one per registration (2); hook log:\n%s", n, e.log())
	}
	if out, err := p.run("rm", "--force", "--time", "0", id); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if fenced(t, ns.Netns) {
		t.Errorf("the fence stayed after podman rm; hook log:\n%s", e.log())
	}
	if got := e.owners(t); len(got) != 0 {
		t.Errorf("records left after podman rm: %v", got)
	}
}
