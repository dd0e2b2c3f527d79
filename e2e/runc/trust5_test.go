// SPDX-License-Identifier: Apache-2.0

package runc

// Red team 2 of 2026-12-07: the cgroup guard of prune needs a cgroup the
// container does not share with its runtime.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// unifiedRoot is where this host mounts its cgroup v2 hierarchy, "" if
// nowhere.
func unifiedRoot() string {
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var fs unix.Statfs_t
		if unix.Statfs(m, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC {
			return m
		}
	}
	return ""
}

// createInOwnGroup runs `runc create` for b started in cgroup v2 group
// path, which b's cgroupsPath names too: the container and its runtime (so
// the hook) share one group, as with podman --cgroups=disabled or a
// rootless runc without a delegated cgroup.
func createInOwnGroup(t *testing.T, b *testnet.Bundle, id string) {
	t.Helper()
	root := unifiedRoot()
	if root == "" {
		t.Skip("no cgroup v2 hierarchy on this host")
	}
	name := testnet.RandName("shared-")
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	group, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer group.Close()
	b.ID = id
	b.Spec.Linux.CgroupsPath = "/" + name
	b.WriteSpec(t)
	t.Cleanup(func() { b.Runc("delete", "-f", id) })
	out, err := os.OpenFile(filepath.Join(b.Dir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runc, _ := testnet.Tool("runc")
	cmd := exec.CommandContext(ctx, runc, "--root", b.Root, "create", "--bundle", b.Dir, id)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(group.Fd())}
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(filepath.Join(b.Dir, "output.log"))
		t.Fatalf("runc create in group %s: %v\n%s", dir, err, data)
	}
}

// TestTrustChainWithoutOwnCgroupPruneKeepsFence is
// TestTrustChainOutlivesPid1PruneKeepsFence for a container that has
// neither a pid namespace nor a cgroup of its own. On main the hook
// recorded no group it shares, so no guard was left once pid 1 was gone:
// the first prune took the fence out and the chain's direct connect got
// through (exit 0).
func TestTrustChainWithoutOwnCgroupPruneKeepsFence(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	b := testnet.NewBundle(t, testnet.BundleOpts{
		NetnsPath:    ns.Path,
		Hooks:        e.hooks(),
		Args:         []string{"sh", "-c", chainScript(e.lab.TCPV4)},
		Capabilities: []string{},
	})
	b.Spec.Process.User.UID, b.Spec.Process.User.GID = testnet.Nobody, testnet.Nobody
	b.Spec.Linux.Namespaces = slices.DeleteFunc(b.Spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace })
	for i, m := range b.Spec.Mounts {
		if m.Destination == "/tmp" {
			b.Spec.Mounts[i] = specs.Mount{Destination: "/tmp", Type: "bind", Source: tmp, Options: []string{"rbind", "rw"}}
		}
	}
	createInOwnGroup(t, b, testnet.RandName("nogroup-"))
	pid := b.State(t).Pid
	t.Cleanup(func() { b.Runc("kill", "--all", b.ID, "KILL") })
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
			break
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "started")); err != nil {
		t.Fatalf("pid 1 did not start its chain; container output:\n%s", b.Output())
	}
	for i := range 20 {
		code, out := e.cli(t, "prune", "--grace", "0s")
		if !fencedNs(t, ns.Netns) {
			t.Errorf("prune %d (exit %d) took the fence out while processes still hop in the namespace:\n%s", i+1, code, out)
			break
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "go"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(15 * time.Second); got == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got, _ = os.ReadFile(filepath.Join(tmp, "result"))
	}
	t.Logf("the chain's direct connect to %s: %s", e.lab.TCPV4, got)
	if !strings.Contains(string(got), "refused") {
		t.Errorf("the chain's direct connect was not refused: %q", got)
	}
}
