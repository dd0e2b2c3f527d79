// SPDX-License-Identifier: Apache-2.0

package runc

// Red team of 2026-12-07: a workload controls its own pid 1, so no stage
// may decide from pid 1 alone that a container has left its namespace.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// startLeaver runs script (workerScript, hopperScript) as the container's
// pid 1 (uid 65534, no capability) in ns, fenced, and waits until pid 1
// has moved into a namespace of its own and the script has written
// /tmp/<ready> (the worker it left in ns, the chain's script). It returns
// the container and the path of its root filesystem as the host sees it.
func startLeaver(t *testing.T, e *trustEnv, ns *testnet.Netns, script, ready string) (*testnet.Bundle, string) {
	t.Helper()
	b := testnet.NewBundle(t, testnet.BundleOpts{
		NetnsPath:    ns.Path,
		Hooks:        e.hooks(),
		Args:         []string{"sh", "-c", script},
		Capabilities: []string{},
	})
	b.Spec.Process.User.UID, b.Spec.Process.User.GID = testnet.Nobody, testnet.Nobody
	b.WriteSpec(t)
	if err := os.Chmod(filepath.Join(b.Dir, "rootfs/tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(t, testnet.RandName("leaver-")); err != nil {
		t.Fatalf("%v\nhook log:\n%s", err, e.log())
	}
	pid := b.State(t).Pid
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, _ := netns.Peek(netns.PidPath(pid))
		if _, err := os.Stat(filepath.Join(root, "tmp", ready)); err == nil && got != want && got != (netns.ID{}) {
			return b, root
		}
	}
	t.Fatalf("pid 1 did not leave the namespace or leave /tmp/%s (unprivileged user namespaces off?); container output:\n%s", ready, b.Output())
	return nil, ""
}

// workerConnect has the worker that stayed in the fenced namespace connect
// straight to the lab's server and returns what it reported.
func workerConnect(t *testing.T, b *testnet.Bundle, root string) string {
	t.Helper()
	result := filepath.Join(root, "tmp/result")
	os.Remove(result)
	if err := os.WriteFile(filepath.Join(root, "tmp/go"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err := os.ReadFile(result); err == nil {
			return string(got)
		}
	}
	t.Fatalf("the worker did not report; container output:\n%s", b.Output())
	return ""
}

// Pid 1 forks a worker and leaves the namespace; a second container then
// joins the namespace (a pod's sidecar, `--network container:X`) and
// stops. The first container still runs (its pid 1 elsewhere, its worker
// in the namespace) and its runtime will call its poststop when it ends:
// it is still an owner, and the second one's poststop must not take the
// fence out. On main the join dropped it as "gone without a poststop", the
// second container's poststop removed the fence as the last owner's, and
// the worker's direct connect got through.
func TestTrustJoinerKeepsOwnerWhosePid1Left(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	leaver, root := startLeaver(t, e, ns.Netns, workerScript(e.lab.TCPV4), "worker")

	joiner := e.startFenced(t, ns.Netns, testnet.RandName("joiner-"))
	if err := joiner.Delete(t); err != nil {
		t.Fatalf("runc delete of the joiner: %v", err)
	}
	if !fencedNs(t, ns.Netns) {
		t.Errorf("the joiner's poststop took the fence out while the first container's worker still runs in the namespace; hook log:\n%s", e.log())
	}
	got := workerConnect(t, leaver, root)
	t.Logf("the worker's direct connect to %s: %s", e.lab.TCPV4, got)
	if !strings.Contains(got, "refused") {
		t.Errorf("the worker's direct connect was not refused: %q", got)
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)
}

// chainScript is the container's pid 1, as uid 65534 with no capability,
// in the host's pid namespace (no pid namespace of its own): it starts a
// chain of processes in the fenced namespace, each of which starts the
// next and exits at once, each looking for /tmp/go to connect straight to
// addr; then pid 1 exits. No runtime calls poststop (the container is
// never deleted): prune is what decides.
func chainScript(addr string) string {
	return hopChain(addr) + "\ntouch /tmp/started"
}

// A container without a pid namespace of its own whose pid 1 exits while a
// chain of processes that fork and exit goes on in its network namespace,
// and whose runtime never calls poststop. prune's look through /proc is
// always behind the chain, and the owner's first process is gone: on main
// prune took the fence out and the chain's direct connect got through.
func TestTrustChainOutlivesPid1PruneKeepsFence(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	tmp := startChain(t, e, ns, func(b *testnet.Bundle) {
		if err := b.Create(t, testnet.RandName("chain-")); err != nil {
			t.Fatalf("%v\nhook log:\n%s", err, e.log())
		}
	})
	prunesKeepFence(t, e, ns.Netns)
	chainRefused(t, e, tmp)
}

// prunesKeepFence runs `prune --grace 0s` 20 times (its look through /proc
// may catch a hopping process now and then) and fails the test at the
// first that takes the fence out of ns.
func prunesKeepFence(t *testing.T, e *trustEnv, ns *testnet.Netns) {
	t.Helper()
	for i := range 20 {
		code, out := e.cli(t, "prune", "--grace", "0s")
		if !fencedNs(t, ns) {
			t.Errorf("prune %d (exit %d) took the fence out while processes still hop in the namespace:\n%s", i+1, code, out)
			return
		}
		if i == 0 {
			t.Logf("prune --grace 0s: exit %d\n%s", code, out)
		}
	}
}
