// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Late fencing (issue 11): containers that start while no bypass-hook plugin is connected
// (NRI fails open) are fenced when the plugin connects and synchronizes with containerd.

// lateTarget is the time within which a container that started unfenced is to be fenced
// after the plugin connects. It is printed beside the measurement, never asserted: speed
// belongs to `make bench`.
const lateTarget = 2 * time.Second

// healthAddr is where the plugin serves /healthz, /readyz and /metrics: loopback of the
// node's network namespace, which is the test's own.
const healthAddr = "127.0.0.1:9724"

// TestNRILateFence: an annotated pod starts while the plugin is down, unfenced. The plugin
// starts, and fences it at its synchronization; a plain pod stays open. The record names the
// pod, `status` shows and filters it, the plugin counts it, and when the pod stops the
// plugin runs its poststop (NRI cannot inject one into a running container): nothing is
// left behind.
func TestNRILateFence(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	r := startPod(t, e, PodConfig{Name: "late", Namespace: "team-a", Annotations: annotated}, "app")
	requireUnfenced(t, e, h, r)
	plain := startPod(t, e, PodConfig{Name: "late-plain", Namespace: "team-a"}, "app")
	// A pod whose annotation widens the policy (a proxy the config does not have): the hook
	// would refuse it at create; running already, it cannot be fenced, and must be said so.
	refused := startPod(t, e, PodConfig{Name: "late-refused", Namespace: "team-a",
		Annotations: map[string]string{"bypass-hook.io/enabled": "true", "bypass-hook.io/proxies": "203.0.113.9:80"}}, "app")
	t.Logf("pod %s started with no plugin connected: unfenced, direct connections go out", r.Pod.Config.Name)

	began := time.Now()
	plugin := startPluginArgs(t, e, h, "--health-addr", healthAddr)
	took := waitRefused(t, r.Status.NetNSPath, e.HTTPAddr4(), began, 15*time.Second)
	t.Logf("LATE FENCE: the pod that started while the plugin was away refused a direct connection %s after the plugin was started (target %s: %s)",
		ms(took), lateTarget, metOrMissed(took))
	requireFenced(t, e, r.Status.NetNSPath)
	requireUnfenced(t, e, h, plain)

	id := netnsID(t, r.Status.NetNSPath)
	rec := h.recordOf(t, id)
	if rec == nil || len(rec.Owners) != 1 || rec.Owners[0].ID != r.Ctrs[0] {
		t.Fatalf("record of the late-fenced pod's namespace: %+v, want its container as the one owner", rec)
	}
	o := rec.Owners[0]
	if o.Identity.Namespace != "team-a" || o.Identity.Pod != "late" || o.Identity.Container != "app" || o.Pid <= 0 {
		t.Errorf("owner %+v: want pod team-a/late, container app and its pid", o)
	}
	if o.Bundle == "" {
		t.Errorf("owner %+v: no bundle; the plugin finds it beside the pod's shim", o)
	}
	if !regexp.MustCompile(`"level":"warning","msg":"NRI: late-fenced[^\n]*"pod":"team-a/late"`).MatchString(plugin.Log()) {
		t.Errorf("no warning naming the pod in the plugin's log:\n%s", tail(plugin.Log(), 20))
	}
	metrics := nodeGet(t, e, "/metrics")
	for _, want := range []string{"bypass_hook_late_fenced_total 1\n", "bypass_hook_late_fence_failures_total 1\n", "bypass_hook_unfenced_containers 1\n", "bypass_hook_nri_ready 1\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("plugin metrics: want %s got:\n%s", strings.TrimSpace(want), grepLines(metrics, "bypass_hook_"))
		}
	}
	// The one it could not fence: an error in the log naming the pod, and status lists it
	// under NOT FENCED and exits 1.
	if !regexp.MustCompile(`"level":"error","msg":"NRI: a selected container runs WITHOUT the fence[^\n]*"pod":"team-a/late-refused"`).MatchString(plugin.Log()) {
		t.Errorf("no error naming the pod team-a/late-refused in the plugin's log:\n%s", tail(plugin.Log(), 20))
	}
	out, code := runHookCode(t, "--config", h.Config, "status", "--summary")
	if code != 1 || !strings.Contains(out, "NOT FENCED") || !strings.Contains(out, "team-a/late-refused/app") {
		t.Errorf("status with an unfenceable container: exit %d, want 1 and it listed under NOT FENCED:\n%s", code, out)
	}
	t.Logf("status --summary:\n%s", out)
	requireOpen(t, e, refused.Status.NetNSPath)
	refused.remove(t, h, netnsID(t, refused.Status.NetNSPath))
	if out, code := runHookCode(t, "--config", h.Config, "status", "--summary"); code != 0 || strings.Contains(out, "NOT FENCED") {
		t.Errorf("status after the unfenceable pod was removed: exit %d:\n%s", code, out)
	}

	// status names the pod, and filters by it.
	out = runHook(t, "--config", h.Config, "status")
	if !strings.Contains(out, "team-a/late/app") {
		t.Errorf("status does not name the pod team-a/late/app:\n%s", out)
	}
	if out := runHook(t, "--config", h.Config, "status", "--namespace", "team-a", "--pod", "late"); !strings.Contains(out, r.Ctrs[0][:12]) {
		t.Errorf("status --namespace team-a --pod late does not show the pod's container:\n%s", out)
	}
	if out := runHook(t, "--config", h.Config, "status", "--pod", "other"); strings.Contains(out, r.Ctrs[0][:12]) {
		t.Errorf("status --pod other shows the pod late:\n%s", out)
	}

	// The plugin runs its poststop at StopContainer: remove checks that the rules are gone
	// after stopp and that no record is left.
	r.remove(t, h, id)
	if !strings.Contains(plugin.Log(), "NRI: ran the poststop stage") {
		t.Errorf("no poststop of the late-fenced container in the plugin's log:\n%s", tail(plugin.Log(), 20))
	}
	plain.remove(t, h, netnsID(t, plain.Status.NetNSPath))
}

// TestNRILateFenceAfterContainerdRestart: the plugin pre-registered with containerd dies
// (containerd does not start it again); a pod starts unfenced; containerd restarts, starts
// the plugin, and the plugin fences the pod at its synchronization.
func TestNRILateFenceAfterContainerdRestart(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{
		NRIPlugins:       map[string]string{"10-bypass-hook": hookBin},
		NRIPluginConfigs: map[string]string{"10-bypass-hook.conf": fmt.Sprintf("config: %s\nbinary: %s\n", h.Config, hookBin)},
	})
	if err := e.WaitNRIPlugin(0, "10-bypass-hook", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	kids := childrenOf(e.Containerd().Pid(), hookBin)
	if len(kids) != 1 {
		t.Fatalf("want one plugin process started by containerd, got %v", kids)
	}
	since := e.ContainerdLogSize()
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitNRIPluginGone(since, "10-bypass-hook", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	r := startPod(t, e, PodConfig{Name: "late-restart", Annotations: annotated}, "app")
	requireUnfenced(t, e, h, r)

	since = e.ContainerdLogSize()
	began := time.Now()
	if err := e.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
	took := waitRefused(t, r.Status.NetNSPath, e.HTTPAddr4(), began, 20*time.Second)
	synced := containerdLogTime(t, e, since, `pre-installed NRI plugin "10-bypass-hook" synchronization success`)
	t.Logf("LATE FENCE after a containerd restart: the pod refused a direct connection %s after the restart began, %s after containerd logged the plugin synchronized (target %s after the plugin starts: %s)",
		ms(took), ms(began.Add(took).Sub(synced)), lateTarget, metOrMissed(began.Add(took).Sub(synced)))
	requireFenced(t, e, r.Status.NetNSPath)
	id := netnsID(t, r.Status.NetNSPath)
	if rec := h.recordOf(t, id); rec == nil || len(rec.Owners) != 1 || rec.Owners[0].Identity.Pod != "late-restart" {
		t.Fatalf("record of the pod's namespace: %+v, want its container as owner, named by its pod", rec)
	}
	// containerd discards a pre-registered plugin's output: its lines are in the hook log.
	found := false
	for _, l := range h.entries() {
		found = found || (l.Component == "nri" && strings.HasPrefix(l.Msg, "NRI: late-fenced"))
	}
	if !found {
		t.Error("no late-fenced line of the plugin in the hook log")
	}
	r.remove(t, h, id)
}

// TestNRIReadyz: /readyz answers 503 while the plugin is not registered with containerd,
// 200 once it is registered and synchronized, and 503 again while containerd restarts;
// /healthz answers 200 all along. systemd (NOTIFY_SOCKET) hears READY=1 only once the
// plugin is registered.
func TestNRIReadyz(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{})
	if err := e.StopContainerd(); err != nil {
		t.Fatal(err)
	}
	notify := listenNotify(t)
	plugin, err := e.StartProcess("bypass-hook-nri", []string{hookBin, "nri", "--socket-path", e.NRISocket,
		"--binary", hookBin, "--config", h.Config, "--health-addr", healthAddr}, "NOTIFY_SOCKET="+notify.path)
	if err != nil {
		t.Fatal(err)
	}
	w := watchReadyz(t, e)
	if err := w.waitFor(http.StatusServiceUnavailable, 10*time.Second); err != nil {
		t.Fatalf("%v\nplugin log:\n%s", err, tail(plugin.Log(), 20))
	}
	if code, _ := nodeGetStatus(e, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with containerd down: %d, want 200 (the plugin lives and retries)", code)
	}
	if notify.ready() {
		t.Error("the plugin told systemd READY=1 before it registered")
	}

	began := time.Now()
	if err := e.StartContainerd(); err != nil {
		t.Fatal(err)
	}
	if err := w.waitFor(http.StatusOK, 15*time.Second); err != nil {
		t.Fatalf("%v\nplugin log:\n%s", err, tail(plugin.Log(), 20))
	}
	t.Logf("READYZ: 503 while containerd was down; 200 %s after containerd was started", ms(time.Since(began)))
	if !notify.waitReady(5 * time.Second) {
		t.Error("the plugin never told systemd READY=1 after it registered")
	}

	if err := e.StopContainerd(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if err := w.waitFor(http.StatusServiceUnavailable, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("READYZ: 503 %s after containerd stopped", ms(time.Since(stopped)))
	if err := e.StartContainerd(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := w.waitFor(http.StatusOK, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("READYZ: 200 again %s after containerd was started again; transitions seen: %s", ms(time.Since(restarted)), w.transitions())
	if code, _ := nodeGetStatus(e, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
}

// startPluginArgs is startPlugin with more arguments for `bypass-hook nri`.
func startPluginArgs(t *testing.T, e *Env, h *hookNode, extra ...string) *Process {
	t.Helper()
	return startPluginArgv(t, e, pluginArgv(e, h, extra...))
}

// pluginArgv is the command line of `bypass-hook nri` that startPluginArgs runs.
func pluginArgv(e *Env, h *hookNode, extra ...string) []string {
	return append([]string{hookBin, "nri", "--socket-path", e.NRISocket, "--binary", hookBin, "--config", h.Config}, extra...)
}

// waitRefused probes a direct connection from the namespace until it is refused, and returns
// the time from began until the first refused probe.
func waitRefused(t *testing.T, ns, addr string, began time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	for {
		r := ProbeTCP(ns, addr, 500*time.Millisecond)
		if r.Outcome == Refused {
			return time.Since(began)
		}
		if time.Since(began) > timeout {
			t.Fatalf("a direct connection from %s is not refused %v after the plugin started: %v", ns, timeout, r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metOrMissed(d time.Duration) string {
	if d <= lateTarget {
		return "met"
	}
	return "MISSED"
}

// nodeGetStatus fetches path from the plugin's health address in the node's namespace.
func nodeGetStatus(e *Env, path string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			return DialInNetNS(e.NetNS, network, addr, 2*time.Second)
		},
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("http://" + healthAddr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func nodeGet(t *testing.T, e *Env, path string) string {
	t.Helper()
	code, body := nodeGetStatus(e, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// runHook runs the bypass-hook binary on the host and returns its output.
func runHook(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(hookBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bypass-hook %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runHookCode runs the bypass-hook binary and returns its output and exit code.
func runHookCode(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(hookBin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("bypass-hook %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// readyzWatch polls /readyz and keeps the sequence of answers.
type readyzWatch struct {
	mu    sync.Mutex
	codes []int
}

func watchReadyz(t *testing.T, e *Env) *readyzWatch {
	w := &readyzWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			code, _ := nodeGetStatus(e, "/readyz")
			w.mu.Lock()
			if n := len(w.codes); n == 0 || w.codes[n-1] != code {
				w.codes = append(w.codes, code)
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// waitFor waits until the last answer is code.
func (w *readyzWatch) waitFor(code int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		last := 0
		if n := len(w.codes); n > 0 {
			last = w.codes[n-1]
		}
		w.mu.Unlock()
		if last == code {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("/readyz did not answer %d within %v; answers so far: %s", code, timeout, w.transitions())
}

func (w *readyzWatch) transitions() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []string
	for _, c := range w.codes {
		s = append(s, fmt.Sprint(c))
	}
	return strings.Join(s, " → ")
}

// notifySocket stands in for systemd's NOTIFY_SOCKET.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); os.Remove(n.path) })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		for _, l := range strings.Split(m, "\n") {
			if l == "READY=1" {
				return true
			}
		}
	}
	return false
}

func (n *notifySocket) waitReady(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n.ready() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// TestNRIMonitorNamesThePod: the monitor's events and its attempts metric name a fenced
// container by its pod namespace, pod and container name.
func TestNRIMonitorNamesThePod(t *testing.T) {
	h := newHookNode(t)
	// NFLOG: the kernel target needs nf_log_all_netns=1 on the host, which tests leave alone.
	f, err := os.OpenFile(h.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("log:\n  target: nflog\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e := NewEnv(t, Options{})
	startPlugin(t, e, h)
	const metricsAddr = "127.0.0.1:9725"
	mon, err := e.StartProcess("bypass-hook-monitor", []string{hookBin, "monitor", "--config", h.Config, "--metrics-addr", metricsAddr, "--resync", "200ms"})
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, mon, `"msg":"monitor started"`, 10*time.Second)

	r := startPod(t, e, PodConfig{Name: "mon", Namespace: "team-b", Annotations: annotated}, "app")
	requireFenced(t, e, r.Status.NetNSPath)
	// The monitor opens the fence's NFLOG socket when it sees the record; try until it logs.
	want := regexp.MustCompile(`"podNamespace":"team-b".*"pod":"mon".*"containerName":"app"|"containerName":"app".*"pod":"mon".*"podNamespace":"team-b"`)
	deadline := time.Now().Add(15 * time.Second)
	for !want.MatchString(mon.Log()) {
		if time.Now().After(deadline) {
			t.Fatalf("no monitor event naming team-b/mon/app:\n%s", tail(mon.Log(), 20))
		}
		ProbeTCP(r.Status.NetNSPath, e.HTTPAddr4(), time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range strings.Split(mon.Log(), "\n") {
		if want.MatchString(l) {
			t.Logf("MONITOR event: %s", l)
			break
		}
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			return DialInNetNS(e.NetNS, network, addr, 2*time.Second)
		},
	}}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	series := regexp.MustCompile(`bypass_hook_attempts_total\{[^}]*container="app"[^}]*namespace="team-b"[^}]*pod="mon"[^}]*\} [1-9]`)
	if !series.Match(body) {
		t.Errorf("monitor metrics: no attempts series labelled namespace team-b, pod mon, container app:\n%s", grepLines(string(body), "bypass_hook_attempts_total"))
	}
	r.remove(t, h, netnsID(t, r.Status.NetNSPath))
}

// waitLog waits until the process's log matches re.
func waitLog(t *testing.T, p *Process, re string, timeout time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for !rx.MatchString(p.Log()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %v:\n%s", p.Name, re, timeout, tail(p.Log(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
