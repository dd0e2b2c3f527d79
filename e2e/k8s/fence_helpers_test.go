// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// What the bypass-hook tests of this package share: the hook's config and files on the node,
// the NRI plugin as a process, pods with their timings, and the checks of a fence.

// annotated are the pod annotations that ask for the fence.
var annotated = map[string]string{"bypass-hook.io/enabled": "true"}

// hookNode is the hook's side of a node: the bypass-hook config that the NRI plugin and the
// hooks it injects read, and the hook's state directory and log.
type hookNode struct {
	Config, StateDir, HookLog string
}

// newHookNode writes the config: the gateway's tinyproxy as the proxies, only annotated pods,
// kube-system excluded, state and log in a temporary directory.
func newHookNode(t *testing.T) *hookNode {
	t.Helper()
	dir := t.TempDir()
	h := &hookNode{
		Config:   filepath.Join(dir, "config.yaml"),
		StateDir: filepath.Join(dir, "state"),
		HookLog:  filepath.Join(dir, "hook.log"),
	}
	cfg := fmt.Sprintf(`proxies: [%q, %q]
selection: annotated
stateDir: %s
hookLog: %s
nri:
  excludeNamespaces: [kube-system]
`, fmt.Sprintf("%s:%d", Gateway4, ProxyPort), fmt.Sprintf("[%s]:%d", Gateway6, ProxyPort), h.StateDir, h.HookLog)
	if err := os.WriteFile(h.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before NewEnv's cleanup, so it runs after it: the poststop lines are in.
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(h.HookLog)
			t.Logf("--- last lines of the hook log %s:\n%s", h.HookLog, tail(string(b), 40))
		}
	})
	return h
}

// hookEntry is one JSON line of the hook log: a stage's final line has exit and duration_ms;
// the NRI plugin's lines (pre-registered) have component "nri".
type hookEntry struct {
	Time       time.Time `json:"time"`
	Level      string    `json:"level"`
	Msg        string    `json:"msg"`
	Stage      string    `json:"stage"`
	Container  string    `json:"container"`
	DurationMS float64   `json:"duration_ms"`
	Exit       *int      `json:"exit"`
	Action     string    `json:"action"`
	Rules      int       `json:"rules"`
	Error      string    `json:"error"`
	Component  string    `json:"component"`
}

func (h *hookNode) entries() []hookEntry {
	f, err := os.Open(h.HookLog)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []hookEntry
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		var e hookEntry
		if json.Unmarshal(s.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// stageResult is the final line of a hook stage ("create", "poststop") for a container.
func (h *hookNode) stageResult(ctrID, stage string) (hookEntry, bool) {
	for _, e := range h.entries() {
		if e.Container == ctrID && e.Stage == stage && e.Exit != nil {
			return e, true
		}
	}
	return hookEntry{}, false
}

// waitStage waits for the final line of a hook stage for a container.
func (h *hookNode) waitStage(ctrID, stage string, timeout time.Duration) (hookEntry, error) {
	deadline := time.Now().Add(timeout)
	for {
		if e, ok := h.stageResult(ctrID, stage); ok {
			return e, nil
		}
		if time.Now().After(deadline) {
			return hookEntry{}, fmt.Errorf("no %s line for container %s in the hook log %s after %v", stage, short(ctrID), h.HookLog, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// records are the hook's records in its state directory (none when it was never made).
func (h *hookNode) records(t *testing.T) []*records.Record {
	t.Helper()
	recs, err := (&records.Store{Dir: h.StateDir}).All()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading the records in %s: %v", h.StateDir, err)
	}
	return recs
}

// recordOf is the record of the namespace id, or nil.
func (h *hookNode) recordOf(t *testing.T, id netns.ID) *records.Record {
	t.Helper()
	for _, r := range h.records(t) {
		if r.Netns == id {
			return r
		}
	}
	return nil
}

// requireNoRecords fails the test when a record names the namespace or one of the containers.
func (h *hookNode) requireNoRecords(t *testing.T, id netns.ID, ctrs ...string) {
	t.Helper()
	for _, r := range h.records(t) {
		if r.Netns == id {
			t.Errorf("the record of the pod's namespace %s is left in %s", id, h.StateDir)
		}
		for _, c := range ctrs {
			if r.HasOwner(c) {
				t.Errorf("a record in %s still names container %s as an owner", h.StateDir, short(c))
			}
		}
	}
	if left, _ := filepath.Glob(filepath.Join(h.StateDir, id.Key()+".*")); len(left) > 0 {
		t.Errorf("files of the pod's namespace left in the state directory: %v", left)
	}
}

func owners(r *records.Record) []string {
	var ids []string
	for _, o := range r.Owners {
		ids = append(ids, o.ID)
	}
	sort.Strings(ids)
	return ids
}

// startPlugin runs `bypass-hook nri` as an external plugin on the node and waits until
// containerd has it connected.
func startPlugin(t *testing.T, e *Env, h *hookNode) *Process {
	t.Helper()
	return startPluginArgv(t, e, []string{hookBin, "nri",
		"--socket-path", e.NRISocket, "--binary", testnet.OCIHook(hookBin), "--config", h.Config})
}

// startPluginArgv runs argv, `bypass-hook nri ...` or a command that execs it, on the node
// and waits until containerd has the plugin connected.
func startPluginArgv(t *testing.T, e *Env, argv []string) *Process {
	t.Helper()
	since := e.ContainerdLogSize()
	p, err := e.StartProcess("bypass-hook-nri", argv)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitNRIPlugin(since, "bypass-hook", 15*time.Second); err != nil {
		t.Fatalf("the plugin did not connect: %v\nplugin log:\n%s", err, tail(p.Log(), 20))
	}
	return p
}

// podRun is a pod started by startPod, with how long each step took.
type podRun struct {
	Pod    *Pod
	Status *PodStatus
	Ctrs   []string
	// Of the pod and its first container: runp (sandbox and CNI), create (NRI's
	// CreateContainer runs here) and start (runc create and start: the createRuntime hook
	// runs here).
	RunP, Create, Start time.Duration
}

func (r *podRun) Total() time.Duration { return r.RunP + r.Create + r.Start }

// startPod runs a pod and starts a container in it for each name. The pod is removed at the
// end of the test if the test has not removed it.
func startPod(t *testing.T, e *Env, pc PodConfig, names ...string) *podRun {
	t.Helper()
	t0 := time.Now()
	pod, err := e.RunPod(pc)
	if err != nil {
		t.Fatal(err)
	}
	r := &podRun{Pod: pod, RunP: time.Since(t0)}
	t.Cleanup(func() { _ = pod.RemoveForce() })
	for i, name := range names {
		t1 := time.Now()
		id, err := pod.CreateContainer(ContainerConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		if _, err := e.Crictl("start", id); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			r.Create, r.Start = t2.Sub(t1), time.Since(t2)
		}
		r.Ctrs = append(r.Ctrs, id)
	}
	if r.Status, err = pod.Inspect(); err != nil {
		t.Fatal(err)
	}
	if r.Status.NetNSPath == "" {
		t.Fatalf("crictl inspectp %s shows no network namespace", short(pod.ID))
	}
	return r
}

// remove stops and removes the pod (`crictl stopp`, `crictl rmp`) and checks that nothing of
// it is left in CRI, on the node or in the hook's state directory.
func (r *podRun) remove(t *testing.T, h *hookNode, id netns.ID) {
	t.Helper()
	e := r.Pod.Env
	// stopp unmounts the namespace. Held open, it outlives that: the rules must be gone from
	// it because the poststop hooks took them out, not because it died with them.
	held, err := os.Open(r.Status.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), held.Fd())
	if a, b := fenceRules(t, e, heldPath), fenceRules(t, e, r.Status.NetNSPath); !slices.Equal(a, b) {
		t.Fatalf("the held namespace %s shows other rules than the pod's %s:\n%v\n%v", heldPath, r.Status.NetNSPath, a, b)
	}
	if err := r.Pod.Stop(); err != nil {
		t.Fatal(err)
	}
	if rules := fenceRules(t, e, heldPath); len(rules) != 0 {
		t.Errorf("after stopp, rules left in the pod's namespace:\n%s", strings.Join(rules, "\n"))
	}
	held.Close()
	if err := r.Pod.Remove(); err != nil {
		t.Fatal(err)
	}
	if ids, err := e.PodIDs(); err == nil && len(ids) == 0 {
		e.AssertNoPodLeft(t, r.Pod.ID, r.Status.NetNSPath)
	} else {
		// Other pods run: AssertNoPodLeft would count theirs.
		if slices.Contains(ids, r.Pod.ID) || err != nil {
			t.Errorf("after rmp, crictl pods still lists %s (%v)", short(r.Pod.ID), err)
		}
		if _, err := os.Stat(r.Status.NetNSPath); !os.IsNotExist(err) {
			t.Errorf("after rmp, the pod's namespace %s is still there", r.Status.NetNSPath)
		}
	}
	h.requireNoRecords(t, id, r.Ctrs...)
}

func netnsID(t *testing.T, path string) netns.ID {
	t.Helper()
	id, err := netns.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// requireInjected checks the OCI spec containerd handed runc: with want, exactly one
// createRuntime hook running `bypass-hook ... create` and one poststop hook running
// `bypass-hook ... poststop`, and the pod's annotation carried into the container; without,
// no bypass-hook at any stage.
func requireInjected(t *testing.T, e *Env, ctrID string, want bool) {
	t.Helper()
	requireInjectedBin(t, e, ctrID, testnet.OCIHook(hookBin), want)
}

// requireInjectedBin is requireInjected for the hook at binary.
func requireInjectedBin(t *testing.T, e *Env, ctrID, binary string, want bool) {
	t.Helper()
	cs, err := e.InspectContainer(ctrID)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Spec == nil {
		t.Fatalf("crictl inspect %s shows no runtime spec", short(ctrID))
	}
	ours := func(hs []specs.Hook, sub string) int {
		n := 0
		for _, h := range hs {
			if h.Path == binary && (sub == "" || (len(h.Args) > 0 && h.Args[len(h.Args)-1] == sub)) {
				n++
			}
		}
		return n
	}
	var hs specs.Hooks
	if cs.Spec.Hooks != nil {
		hs = *cs.Spec.Hooks
	}
	if !want {
		// Prestart too (deprecated, still run): any stage counts.
		all := slices.Concat(hs.Prestart, hs.CreateRuntime, hs.CreateContainer, hs.StartContainer, hs.Poststart, hs.Poststop)
		if n := ours(all, ""); n != 0 {
			t.Errorf("container %s has %d bypass-hook hooks, want none: %+v", short(ctrID), n, hs)
		}
		return
	}
	if n := ours(hs.CreateRuntime, "create"); n != 1 {
		t.Errorf("container %s: %d createRuntime hooks running `%s ... create`, want 1: %+v", short(ctrID), n, binary, hs.CreateRuntime)
	}
	if n := ours(hs.Poststop, "poststop"); n != 1 {
		t.Errorf("container %s: %d poststop hooks running `%s ... poststop`, want 1: %+v", short(ctrID), n, binary, hs.Poststop)
	}
	if v := cs.Spec.Annotations["bypass-hook.io/enabled"]; v != "true" {
		t.Errorf("container %s: annotation bypass-hook.io/enabled is %q in its spec, want the pod's \"true\"", short(ctrID), v)
	}
}

// fenceRules lists the bypass-hook rules in the namespace at nsPath, as the host's
// iptables-save and ip6tables-save (the iptables backend's tools) and nft (the
// nftables backend's table, which backend: auto, the default, picks where the
// kernel has nf_tables) show them.
func fenceRules(t *testing.T, e *Env, nsPath string) []string {
	t.Helper()
	var rules []string
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		p, err := lookTool(tool)
		if err != nil {
			t.Fatalf("%s not found: apt-get install -y iptables", tool)
		}
		out, err := e.RunInNetNS(nsPath, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "BYPASS-HOOK") {
				rules = append(rules, tool[:len(tool)-len("tables-save")]+": "+l)
			}
		}
	}
	nft, err := lookTool("nft")
	if err != nil {
		t.Fatalf("nft not found: apt-get install -y nftables")
	}
	// No table: nft fails with "No such file or directory".
	if out, err := e.RunInNetNS(nsPath, nft, "list", "table", "inet", "bypass_hook"); err == nil {
		for _, l := range strings.Split(out, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				rules = append(rules, "nft: "+nftCounters.ReplaceAllString(l, "counter"))
			}
		}
	}
	return rules
}

// nftCounters is what changes in a listing as packets pass.
var nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// countAppended counts the rules of the fence: the iptables chain's and the
// nftables table's (each of which has a comment naming its family).
func countAppended(rules []string) int {
	n := 0
	for _, r := range rules {
		if strings.Contains(r, "-A BYPASS-HOOK ") || strings.Contains(r, `comment "ipv`) {
			n++
		}
	}
	return n
}

func expectProbe(t *testing.T, what string, r ProbeResult, want Outcome) {
	t.Helper()
	t.Logf("  %-42s %v", what, r)
	if r.Outcome != want {
		t.Errorf("%s: %v, want %s", what, r, want)
	}
}

// requireFenced probes from the pod's namespace: through the proxy the node's HTTP server
// answers, over IPv4 and IPv6; a direct connection is refused (ECONNREFUSED, a TCP reset).
func requireFenced(t *testing.T, e *Env, ns string) {
	t.Helper()
	expectProbe(t, "netns: http via proxy v4", ProbeProxy(ns, e.ProxyAddr4(), e.HTTPAddr4(), probeTimeout), Success)
	expectProbe(t, "netns: http via proxy v6", ProbeProxy(ns, e.ProxyAddr6(), e.HTTPAddr6(), probeTimeout), Success)
	expectProbe(t, "netns: http direct v4", ProbeHTTP(ns, e.HTTPAddr4(), probeTimeout), Refused)
	expectProbe(t, "netns: http direct v6", ProbeHTTP(ns, e.HTTPAddr6(), probeTimeout), Refused)
}

// requireOpen probes from the pod's namespace: a direct connection to the node's HTTP server
// works, over IPv4 and IPv6.
func requireOpen(t *testing.T, e *Env, ns string) {
	t.Helper()
	expectProbe(t, "netns: http direct v4", ProbeHTTP(ns, e.HTTPAddr4(), probeTimeout), Success)
	expectProbe(t, "netns: http direct v6", ProbeHTTP(ns, e.HTTPAddr6(), probeTimeout), Success)
}

// requireUnfenced: the container runs without the hook and its namespace is open.
func requireUnfenced(t *testing.T, e *Env, h *hookNode, r *podRun) {
	t.Helper()
	for _, c := range r.Ctrs {
		requireInjected(t, e, c, false)
		if _, ok := h.stageResult(c, "create"); ok {
			t.Errorf("the hook ran for %s", short(c))
		}
	}
	if rules := fenceRules(t, e, r.Status.NetNSPath); len(rules) != 0 {
		t.Errorf("rules in an unfenced pod's namespace:\n%s", strings.Join(rules, "\n"))
	}
	requireOpen(t, e, r.Status.NetNSPath)
}

// waitRulesGone waits until the namespace holds no bypass-hook rules.
func waitRulesGone(t *testing.T, e *Env, ns string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rules := fenceRules(t, e, ns)
		if len(rules) == 0 || time.Now().After(deadline) {
			return rules
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pidsOfExe are the processes running the executable at path (through a link or not).
func pidsOfExe(path string) []int {
	want, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil
	}
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", ent.Name(), "exe")); err == nil && exe == want && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ppid is the parent of pid, or 0.
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	var state string
	var pp int
	if i < 0 {
		return 0
	}
	if _, err := fmt.Sscanf(s[i+2:], "%s %d", &state, &pp); err != nil {
		return 0
	}
	return pp
}

// cmdline is pid's command line, with spaces between the arguments.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// continueOnCleanup makes sure a process the test stopped with SIGSTOP runs again, so that
// the harness can stop it.
func continueOnCleanup(t *testing.T, p *Process) {
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
}

var containerdTimeRE = regexp.MustCompile(`time="([^"]+)"`)

// containerdLogTime is the time containerd logged the first line after byte offset since that
// matches re.
func containerdLogTime(t *testing.T, e *Env, since int, re string) time.Time {
	t.Helper()
	rx := regexp.MustCompile(re)
	log := e.ContainerdLog()
	if since > len(log) {
		since = len(log)
	}
	for _, line := range strings.Split(log[since:], "\n") {
		if !rx.MatchString(strings.ReplaceAll(line, `\"`, `"`)) {
			continue
		}
		if m := containerdTimeRE.FindStringSubmatch(line); m != nil {
			if ts, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				return ts
			}
		}
	}
	t.Fatalf("containerd's log has no line matching %q with a time", re)
	return time.Time{}
}

// requirePluginByConfig turns on containerd's NRI default validator with
// required_plugins = ["bypass-hook"] and restarts containerd with it.
func requirePluginByConfig(t *testing.T, e *Env) {
	t.Helper()
	e.Opts.NRIRequiredPlugins = []string{"bypass-hook"}
	if err := os.WriteFile(e.ConfigPath, []byte(e.ContainerdConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
}

// childrenOf are the processes whose parent is pid and whose executable is exe.
func childrenOf(pid int, exe string) []int {
	var kids []int
	for _, p := range pidsOfExe(exe) {
		if ppid(p) == pid {
			kids = append(kids, p)
		}
	}
	return kids
}
