// SPDX-License-Identifier: Apache-2.0

package runc

// Regression tests for issue 19 ("Trust, round three"): a workload
// controls its own pid 1, so nothing may decide from pid 1 alone that its
// namespace is abandoned.

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// workerScript is the container's pid 1, as uid 65534 with no capability:
// it forks a worker that stays in the fenced namespace and, each time the
// file /tmp/go appears, connects straight to addr and writes what happened
// to /tmp/result; then it moves itself into a user and network namespace
// of its own (no capability needed where unprivileged user namespaces are
// allowed), so that the owner the hook recorded is "in another network
// namespace".
func workerScript(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return `(while :; do
  if [ -e /tmp/go ]; then
    nc -w 3 ` + host + ` ` + port + ` </dev/null >/tmp/out 2>&1; echo "exit $?" >>/tmp/out
    mv /tmp/out /tmp/result; rm -f /tmp/go
  fi
  sleep 0.1
done) &
echo $! >/tmp/worker
exec unshare -Urn sleep 1000`
}

// Hole 1: pid 1 forks a worker and leaves the namespace. Its owner is
// stale, but the namespace still has a process: prune, even with no grace,
// keeps the fence, and the worker's direct connect is refused.
func TestTrustPid1LeavesNamespacePruneKeepsFence(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	b, root := startLeaver(t, e, ns.Netns, workerScript(e.lab.TCPV4), "worker")
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if stale := e.staleOwners(t); len(stale) != 1 || stale[0] != b.ID {
		t.Fatalf("status marks %v stale, want [%s] (pid 1 moved away)", stale, b.ID)
	}

	code, out := e.cli(t, "prune", "--grace", "0s")
	t.Logf("prune --grace 0s: exit %d\n%s", code, out)
	if code != 0 {
		t.Errorf("prune exited %d", code)
	}
	if !fencedNs(t, ns.Netns) {
		t.Errorf("prune took the fence out of a namespace in which the worker still runs; hook log:\n%s", e.log())
	}
	if !strings.Contains(out, "kept") {
		t.Errorf("prune does not say it kept the fence:\n%s", out)
	}

	// The worker, in the fenced namespace, connects straight out.
	got := workerConnect(t, b, root)
	t.Logf("the worker's direct connect to %s: %s", e.lab.TCPV4, got)
	if !strings.Contains(got, "refused") {
		t.Errorf("the worker's direct connect was not refused: %s", got)
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)

	// Once the worker is gone too, nothing is left in the namespace: the
	// fence goes with the next prune.
	if out, err := b.Runc("kill", b.ID, "KILL"); err != nil {
		t.Fatalf("runc kill: %v %s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); netns.InUse(want) != "" && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if code, out := e.cli(t, "prune", "--grace", "0s"); code != 0 || fencedNs(t, ns.Netns) {
		t.Errorf("prune with nothing left in the namespace: exit %d, fenced %v\n%s", code, fencedNs(t, ns.Netns), out)
	}
}

// Hole 1, the socket variant: pid 1 makes a TCP socket in the fenced namespace and then
// leaves for a user and network namespace of its own, keeping the socket; no process is left
// in the fenced namespace (only the lab's bind mount holds it). A socket sends through the
// namespace it was made in, so prune must keep the fence, and the socket's connect straight
// out is refused.
func TestTrustSocketHeldAfterLeaving(t *testing.T) { testSocketHeld(t, "make") }

// The socket, once out of the fenced namespace, is parked in flight over a unix socket pair
// (SCM_RIGHTS) and closed, so that no process's file table shows it; it is taken back after
// the prune. On main before the fix prune took the fence out and the connect got through.
func TestTrustSocketInFlightAfterLeaving(t *testing.T) { testSocketHeld(t, "make-inflight") }

func testSocketHeld(t *testing.T, mode string) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	helper := filepath.Join(t.TempDir(), "sockhold")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", helper, "./testdata/sockhold")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the helper: %v\n%s", err, out)
	}
	b := testnet.NewBundle(t, testnet.BundleOpts{
		NetnsPath:    ns.Path,
		Hooks:        e.hooks(),
		Args:         []string{"/sockhold", mode, e.lab.TCPV4},
		Capabilities: []string{},
	})
	b.Spec.Process.User.UID, b.Spec.Process.User.GID = testnet.Nobody, testnet.Nobody
	b.WriteSpec(t)
	if err := os.Chmod(filepath.Join(b.Dir, "rootfs/tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(helper)
	if err == nil {
		err = os.WriteFile(filepath.Join(b.Dir, "rootfs/sockhold"), data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Create(t, testnet.RandName("sockhold-")); err != nil {
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
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(root, "tmp/ready")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, _ := netns.Peek(netns.PidPath(pid)); got == want || got == (netns.ID{}) {
		t.Fatalf("pid 1 did not leave the namespace; container output:\n%s", b.Output())
	}

	code, out := e.cli(t, "prune", "--grace", "0s")
	t.Logf("prune --grace 0s: exit %d\n%s", code, out)
	if !fencedNs(t, ns.Netns) {
		t.Errorf("prune took the fence out of a namespace a held socket still sends through; hook log:\n%s", e.log())
	}
	if !strings.Contains(out, "socket") {
		t.Errorf("prune does not say a socket keeps the fence:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp/go"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	var got []byte
	deadline = time.Now().Add(10 * time.Second)
	for got == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		got, _ = os.ReadFile(filepath.Join(root, "tmp/result"))
	}
	t.Logf("the held socket's connect to %s from pid 1's own namespace: %s", e.lab.TCPV4, got)
	if !strings.Contains(string(got), "refused") {
		t.Errorf("the held socket's direct connect was not refused: %q", got)
	}
}

// prune judges owners by their pids and a namespace's use by every process
// in /proc. Run in a pid namespace of its own (a monitor container without
// hostPID, docker run without --pid=host), it sees no container process:
// every owner looks gone and nothing in use. It must refuse rather than
// take the fence of a running container out (main did, and the running
// container's direct connect got through).
func TestTrustPruneInOwnPidNamespaceRefuses(t *testing.T) {
	e := newTrustEnv(t, "")
	testnet.RequireTools(t, "unshare")
	ns := e.lab.AddClient(t)
	e.startFenced(t, ns.Netns, testnet.RandName("running-"))

	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", hookBin, "--config", e.cfgPath, "prune", "--grace", "0s")
	out, err := cmd.CombinedOutput()
	t.Logf("prune in a pid namespace of its own: %v\n%s", err, out)
	if !fencedNs(t, ns.Netns) {
		t.Fatalf("prune in a pid namespace of its own took out the fence of a running container; hook log:\n%s", e.log())
	}
	if err == nil || !strings.Contains(string(out), "pid namespace") {
		t.Errorf("prune in a pid namespace of its own did not fail naming the pid namespace: %v\n%s", err, out)
	}
	testnet.ExpectRefusedAs(t, ns.Netns, e.lab, testnet.Nobody)
}

// hopperScript is the container's pid 1, as uid 65534 with no capability:
// it starts a chain of processes in the fenced namespace, each of which
// starts the next and exits at once (so that any pid prune read in /proc
// is gone when prune looks at it), and each looks for /tmp/go to connect
// straight to addr; then pid 1 moves into a namespace of its own.
func hopperScript(addr string) string {
	return hopChain(addr) + "\nexec unshare -Urn sleep 1000"
}

// hopChain starts a chain of shells that each start the next and exit, in
// the container's namespace; the one that finds /tmp/go connects straight
// to addr and leaves what nc said in /tmp/result.
func hopChain(addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return `cat >/tmp/hop.sh <<'END'
if [ -e /tmp/go ]; then
  nc -w 3 ` + host + ` ` + port + ` </dev/null >/tmp/out 2>&1; echo "exit $?" >>/tmp/out
  mv /tmp/out /tmp/result; rm -f /tmp/go
fi
sh /tmp/hop.sh &
END
sh /tmp/hop.sh`
}

// A process that never stays: prune lists /proc and then looks at each pid,
// and a chain of processes that fork and exit is always elsewhere. While the
// container's own pid 1 still runs (here in a namespace of its own), its
// fence is not abandoned, whatever prune's scan saw. On main, one of twenty
// prunes took the fence out and the chain's direct connect got through.
func TestTrustHoppingProcessesPruneKeepsFence(t *testing.T) {
	e := newTrustEnv(t, "")
	ns := e.lab.AddClient(t)
	b, root := startLeaver(t, e, ns.Netns, hopperScript(e.lab.TCPV4), "hop.sh")
	prunesKeepFence(t, e, ns.Netns)
	got := workerConnect(t, b, root)
	t.Logf("the chain's direct connect to %s: %s", e.lab.TCPV4, got)
	if !strings.Contains(got, "refused") {
		t.Errorf("the chain's direct connect was not refused: %q", got)
	}
}
