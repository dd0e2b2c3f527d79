// SPDX-License-Identifier: Apache-2.0

package runc

// Red team 2 of 2026-12-07: prune's cgroup guard must hold for a container
// that shares its runtime's cgroup, and for a prune in a cgroup namespace
// of its own.

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

	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// createInOwnGroup runs `runc create` for b started in cgroup v2 group
// path, which b's cgroupsPath names too: the container and its runtime (so
// the hook) share one group, as with podman --cgroups=disabled or a
// rootless runc without a delegated cgroup.
func createInOwnGroup(t *testing.T, b *testnet.Bundle, id string) {
	t.Helper()
	root := records.Cgroup2Root()
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

// startChain runs chainScript as the pid 1 (uid 65534, no capability) of
// a container without a pid namespace of its own in ns, fenced, created by
// create, and waits until pid 1 has exited with its chain going on. It
// returns the directory the container's /tmp is.
func startChain(t *testing.T, e *trustEnv, ns *testnet.Client, create func(*testnet.Bundle)) string {
	t.Helper()
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
	create(b)
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
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		t.Fatalf("pid 1 (%d) did not exit", pid)
	}
	return tmp
}

// chainRefused has the chain in tmp connect straight to the lab's server
// and fails the test unless the fence refused it.
func chainRefused(t *testing.T, e *trustEnv, tmp string) {
	t.Helper()
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

// TestTrustChainWithoutOwnCgroupPruneKeepsFence is
// TestTrustChainOutlivesPid1PruneKeepsFence for a container that has
// neither a pid namespace nor a cgroup of its own. On main the hook
// recorded no group it shares, so no guard was left once pid 1 was gone:
// the first prune took the fence out and the chain's direct connect got
// through (exit 0).
func TestTrustChainWithoutOwnCgroupPruneKeepsFence(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	tmp := startChain(t, e, ns, func(b *testnet.Bundle) { createInOwnGroup(t, b, testnet.RandName("nogroup-")) })
	prunesKeepFence(t, e, ns.Netns)
	chainRefused(t, e, tmp)
}

// TestTrustPruneInCgroupNamespaceKeepsFence runs prune as a container with
// a cgroup namespace of its own does (Docker's and podman's default on
// cgroup v2: its own cgroup2 mount shows its group as the root), against
// the chain of TestTrustChainOutlivesPid1PruneKeepsFence. The owner's
// group is recorded by its host path, which that view does not show: on
// main the group looked empty, prune took the fence out, and the chain's
// direct connect got through.
func TestTrustPruneInCgroupNamespaceKeepsFence(t *testing.T) {
	testnet.RequireTools(t, "unshare")
	root := records.Cgroup2Root()
	if root == "" {
		t.Skip("no cgroup v2 hierarchy on this host")
	}
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	tmp := startChain(t, e, ns, func(b *testnet.Bundle) {
		if err := b.Create(t, testnet.RandName("chain-")); err != nil {
			t.Fatalf("%v\nhook log:\n%s", err, e.log())
		}
	})
	// prune's group: the root of its cgroup namespace.
	dir := filepath.Join(root, testnet.RandName("prune-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	group, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer group.Close()
	// The look through /proc catches the chain now and then: prune again.
	for i := range 20 {
		cmd := exec.Command("unshare", "--cgroup", "--mount", "--propagation", "private", "sh", "-c",
			`umount -l "$1" && mount -t cgroup2 cgroup2 "$1" || exit 99; exec "$2" --config "$3" prune --grace 0s`, "sh", root, hookBin, e.cfgPath)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(group.Fd())}
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() == 99 {
			t.Fatalf("cannot mount a cgroup2 file system in a cgroup namespace of its own: %s", out)
		}
		if i == 0 {
			t.Logf("prune --grace 0s in a cgroup namespace of its own: %v\n%s", err, out)
		}
		if !fencedNs(t, ns.Netns) {
			t.Errorf("prune %d in a cgroup namespace of its own (%v) took the fence out while processes still hop in the namespace:\n%s", i+1, err, out)
			break
		}
	}
	chainRefused(t, e, tmp)
}
