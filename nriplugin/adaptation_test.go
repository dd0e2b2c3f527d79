// SPDX-License-Identifier: Apache-2.0

package nriplugin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

// These tests run the plugin against the runtime side of NRI that
// containerd embeds (pkg/adaptation), over a real socket in a temporary
// directory, and send it CreateContainer requests as containerd would. The
// runtime side runs in a process of its own (this test binary again), so
// that a runtime restart is what it is on a node: the process dies, and
// every connection with it.

// runtimeEnv makes the test binary the stand-in runtime (serveRuntime).
const runtimeEnv = "BYPASS_HOOK_TEST_NRI_RUNTIME"

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // the runtime side logs through logrus' standard logger
	if dir := os.Getenv(runtimeEnv); dir != "" {
		os.Exit(serveRuntime(dir))
	}
	testnet.MaybeRunProbe()
	code := testnet.GuardHost(m)
	if builtBin != "" { // shared by the tests that run it: removed after all of them
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// reply is the stand-in runtime's answer to one CreateContainer request.
type reply struct {
	Adjust *api.ContainerAdjustment `json:"adjust"`
	Err    string                   `json:"err"`
}

// serveRuntime is the stand-in runtime: an NRI adaptation with its socket,
// plugin and plugin config directories in dir. It says "ready" once it has
// started (and so its pre-registered plugins), then answers each
// CreateContainer request, one JSON line on stdin, with one JSON line.
func serveRuntime(dir string) int {
	sync := func(ctx context.Context, cb nri.SyncCB) error {
		_, err := cb(ctx, nil, nil)
		return err
	}
	update := func(context.Context, []*nri.ContainerUpdate) ([]*nri.ContainerUpdate, error) { return nil, nil }
	r, err := nri.New("bh-test-runtime", "1.0", sync, update,
		nri.WithSocketPath(filepath.Join(dir, "nri.sock")),
		nri.WithPluginPath(filepath.Join(dir, "plugins")),
		nri.WithPluginConfigPath(filepath.Join(dir, "conf.d")))
	if err == nil {
		err = r.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req api.CreateContainerRequest
		var rep reply
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			rep.Err = err.Error()
		} else if rsp, err := r.CreateContainer(context.Background(), &req); err != nil {
			rep.Err = err.Error()
		} else {
			rep.Adjust = rsp.GetAdjust()
		}
		out.Encode(rep)
	}
	r.Stop()
	return 0
}

// runtime drives the stand-in runtime process.
type runtime struct {
	t   *testing.T
	dir string
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (rt *runtime) socket() string    { return filepath.Join(rt.dir, "nri.sock") }
func (rt *runtime) pluginDir() string { return filepath.Join(rt.dir, "plugins") }
func (rt *runtime) confDir() string   { return filepath.Join(rt.dir, "conf.d") }

func newRuntime(t *testing.T, dir string) *runtime {
	t.Helper()
	rt := &runtime{t: t, dir: dir}
	for _, d := range []string{rt.pluginDir(), rt.confDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rt.start()
	t.Cleanup(rt.kill)
	return rt
}

// start starts the runtime and waits until it serves.
func (rt *runtime) start() {
	rt.t.Helper()
	self, err := os.Executable()
	if err != nil {
		rt.t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), runtimeEnv+"="+rt.dir)
	cmd.Stderr = os.Stderr
	if rt.in, err = cmd.StdinPipe(); err != nil {
		rt.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		rt.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		rt.t.Fatal(err)
	}
	rt.cmd = cmd
	rt.out = bufio.NewScanner(stdout)
	rt.out.Buffer(nil, 1<<20)
	if !rt.out.Scan() || rt.out.Text() != "ready" {
		rt.t.Fatalf("the stand-in runtime did not start: %q %v", rt.out.Text(), rt.out.Err())
	}
}

// kill ends the runtime as a crash or a restart does: at once, and every
// connection with it.
func (rt *runtime) kill() {
	if rt.cmd == nil {
		return
	}
	rt.cmd.Process.Kill()
	rt.cmd.Wait()
	rt.cmd = nil
}

// create sends a CreateContainer request and returns the adjustment.
func (rt *runtime) create(p *api.PodSandbox, c *api.Container) *api.ContainerAdjustment {
	rt.t.Helper()
	req, err := json.Marshal(&api.CreateContainerRequest{Pod: p, Container: c})
	if err != nil {
		rt.t.Fatal(err)
	}
	if _, err := rt.in.Write(append(req, '\n')); err != nil {
		rt.t.Fatalf("CreateContainer %s: %v", c.Name, err)
	}
	var rep reply
	if !rt.out.Scan() {
		rt.t.Fatalf("CreateContainer %s: no answer from the runtime: %v", c.Name, rt.out.Err())
	}
	if err := json.Unmarshal(rt.out.Bytes(), &rep); err != nil || rep.Err != "" {
		rt.t.Fatalf("CreateContainer %s: %v %s", c.Name, err, rep.Err)
	}
	return rep.Adjust
}

// probeCtr is a container the plugin selects under every config the tests
// use: it shows when the plugin is registered.
func probeCtr() *api.Container {
	return ctr("probe", map[string]string{config.AnnEnabled: "true"}, podNet, nil)
}

// waitRegistered sends requests until the plugin answers them.
func (rt *runtime) waitRegistered() {
	rt.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if len(rt.create(pod("default", nil), probeCtr()).GetHooks().GetCreateRuntime()) > 0 {
			return
		}
		if time.Now().After(deadline) {
			rt.t.Fatal("the plugin did not register with the runtime within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a log sink that goroutines may write after a test's end.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a config file and a fake hook binary for the plugin.
type fixture struct {
	cfgPath, binary, hookLog string
}

func newFixture(t *testing.T, yaml string) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{cfgPath: filepath.Join(dir, "config.yaml"), binary: filepath.Join(dir, "bin", "bypass-hook"), hookLog: filepath.Join(dir, "hook.log")}
	os.MkdirAll(filepath.Dir(f.binary), 0o755)
	if err := os.WriteFile(f.binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.writeConfig(t, yaml)
	return f
}

func (f fixture) writeConfig(t *testing.T, yaml string) {
	t.Helper()
	// Renamed into place, as editors do: the plugin notices the new file.
	tmp := f.cfgPath + ".new"
	if err := os.WriteFile(tmp, []byte(yaml+"\nhookLog: "+f.hookLog+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.cfgPath); err != nil {
		t.Fatal(err)
	}
}

// runPlugin runs the plugin in this process as an external plugin until
// the test ends, and returns its log.
func runPlugin(t *testing.T, socket string, f fixture) *syncBuffer {
	t.Helper()
	logBuf := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(logBuf)
	p, err := nriplugin.New(nriplugin.Options{SocketPath: socket, Binary: f.binary, Config: f.cfgPath, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("plugin Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the plugin did not stop within 10s of its context's end")
		}
		p.Close()
		if t.Failed() {
			t.Logf("plugin log:\n%s", logBuf)
		}
	})
	return logBuf
}

// hookArgs returns the argument lists of the hooks that run binary.
func hookArgs(hooks []*api.Hook, binary string) [][]string {
	var out [][]string
	for _, h := range hooks {
		if h.Path == binary {
			out = append(out, h.Args)
		}
	}
	return out
}

func TestPluginAgainstRuntime(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	f := newFixture(t, "proxies: [198.51.100.1:3128]\nselection: annotated\nnri:\n  excludeNamespaces: [kube-system]\n")
	runPlugin(t, rt.socket(), f)
	rt.waitRegistered()

	on := map[string]string{config.AnnEnabled: "true"}
	wantCreate := []string{f.binary, "--config", f.cfgPath, "create"}
	wantPoststop := []string{f.binary, "--config", f.cfgPath, "poststop"}
	for _, tc := range []struct {
		name     string
		pod      *api.PodSandbox
		ctr      *api.Container
		injected bool
	}{
		{"annotated pod", pod("default", on), ctr("app", nil, podNet, nil), true},
		{"annotated container", pod("default", nil), ctr("app", on, podNet, nil), true},
		{"plain container", pod("default", nil), ctr("app", nil, podNet, nil), false},
		{"enabled=false container in an annotated pod", pod("default", on), ctr("app", map[string]string{config.AnnEnabled: "false"}, podNet, nil), false},
		{"excluded namespace", pod("kube-system", on), ctr("app", on, podNet, nil), false},
		{"hook there already", pod("default", on), ctr("app", nil, podNet, &api.Hooks{
			CreateRuntime: []*api.Hook{{Path: f.binary, Args: wantCreate}},
			Poststop:      []*api.Hook{{Path: f.binary, Args: wantPoststop}},
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adj := rt.create(tc.pod, tc.ctr)
			h := adj.GetHooks()
			create, poststop := hookArgs(h.GetCreateRuntime(), f.binary), hookArgs(h.GetPoststop(), f.binary)
			if !tc.injected {
				if len(create)+len(poststop)+len(h.GetPrestart())+len(h.GetCreateContainer()) > 0 {
					t.Errorf("hooks injected: createRuntime %v poststop %v", create, poststop)
				}
				return
			}
			if !slices.EqualFunc(create, [][]string{wantCreate}, slices.Equal) || !slices.EqualFunc(poststop, [][]string{wantPoststop}, slices.Equal) {
				t.Errorf("createRuntime %v, poststop %v; want exactly one of each: %v, %v", create, poststop, wantCreate, wantPoststop)
			}
			for _, hk := range append(h.GetCreateRuntime(), h.GetPoststop()...) {
				if !slices.Contains(hk.Env, "BYPASS_HOOK_CONFIG="+f.cfgPath) || hk.GetTimeout().GetValue() <= 0 {
					t.Errorf("hook env %v timeout %v", hk.Env, hk.GetTimeout())
				}
			}
			got, carried := adj.GetAnnotations()[config.AnnEnabled]
			if !carried {
				got = tc.ctr.Annotations[config.AnnEnabled]
			}
			if got != "true" {
				t.Errorf("the container's annotation %s is %q after the adjustment, want \"true\" (carried from the pod, or its own)", config.AnnEnabled, got)
			}
		})
	}

	// The config changes under the running plugin: it follows.
	f.writeConfig(t, "proxies: [198.51.100.1:3128]\nselection: all\n")
	if adj := rt.create(pod("default", nil), ctr("app", nil, podNet, nil)); len(hookArgs(adj.GetHooks().GetCreateRuntime(), f.binary)) != 1 {
		t.Errorf("after the config changed to selection: all, a plain container got hooks %v", adj.GetHooks())
	}
}

// The runtime restarts (containerd restarting): the external plugin
// registers again by itself, and injects again, even when its config broke
// meanwhile.
func TestPluginReconnects(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	f := newFixture(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	log := runPlugin(t, rt.socket(), f)
	rt.waitRegistered()

	for i := range 2 {
		if i == 1 {
			// A config broken meanwhile does not keep the plugin away: it
			// registers with the last good one (the hooks refuse the file).
			f.writeConfig(t, "proxies: [nonsense]\n")
		}
		rt.kill()
		began := time.Now()
		rt.start()
		rt.waitRegistered()
		t.Logf("restart %d: registered again %v after the runtime came back", i+1, time.Since(began).Round(time.Millisecond))
	}
	if n := strings.Count(log.String(), "NRI: connected"); n != 3 {
		t.Errorf("the plugin connected %d times, want 3:\n%s", n, log)
	}
	if !strings.Contains(log.String(), "keeps the last good one") {
		t.Errorf("the plugin did not say it keeps the last good config:\n%s", log)
	}
}

// A wrong index or a missing hook binary is refused before anything
// connects.
func TestPluginRefusesBadSetup(t *testing.T) {
	f := newFixture(t, "proxies: [198.51.100.1:3128]\n")
	if _, err := nriplugin.New(nriplugin.Options{Binary: f.binary, Config: f.cfgPath, Index: "7"}); err == nil {
		t.Error("index 7 was accepted; NRI wants two digits")
	}
	if _, err := nriplugin.New(nriplugin.Options{Binary: "/nonexistent/bypass-hook", Config: f.cfgPath}); err == nil {
		t.Error("a missing hook binary was accepted")
	}
}

// A config that cannot be loaded when the plugin starts does not keep it
// away (NRI would then let every container start unfenced): it gives every
// container outside kube-system the hook, which refuses it with the
// config's error, until the file is fixed.
func TestPluginBrokenConfigFailsClosed(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	f := newFixture(t, "proxies: [nonsense]\nselection: annotated\n")
	log := runPlugin(t, rt.socket(), f)
	rt.waitRegistered()
	if !strings.Contains(log.String(), "proxies[0]") {
		t.Errorf("the plugin did not log the config's error:\n%s", log)
	}
	wantCreate := []string{f.binary, "--config", f.cfgPath, "create"}
	adj := rt.create(pod("default", nil), ctr("plain", nil, podNet, nil))
	if got := hookArgs(adj.GetHooks().GetCreateRuntime(), f.binary); !slices.EqualFunc(got, [][]string{wantCreate}, slices.Equal) {
		t.Errorf("with a broken config a plain container got createRuntime %v, want [%v]", got, wantCreate)
	}
	if adj := rt.create(pod("kube-system", nil), ctr("dns", nil, podNet, nil)); len(adj.GetHooks().GetCreateRuntime()) > 0 {
		t.Error("a kube-system container got the hook while the config is broken")
	}
	// The hook the plugin injects refuses the container with the same error.
	state := `{"ociVersion":"1.0.2","id":"broken-cfg","status":"creating","pid":1,"bundle":"/"}`
	cmd := exec.Command(buildBinary(t), "--config", f.cfgPath, "create")
	cmd.Stdin = strings.NewReader(state)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "proxies[0]") {
		t.Errorf("the injected hook with the broken config: %v: %s", err, out)
	}

	f.writeConfig(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	if adj := rt.create(pod("default", nil), ctr("plain2", nil, podNet, nil)); len(adj.GetHooks().GetCreateRuntime()) > 0 {
		t.Error("once the config is fixed, a plain container still got the hook under selection: annotated")
	}
}

// A misspelt annotation under bypass-hook.io/ gets the hook, which refuses
// it, rather than being passed over as "not annotated".
func TestPluginMisspeltAnnotation(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	f := newFixture(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	runPlugin(t, rt.socket(), f)
	rt.waitRegistered()
	adj := rt.create(pod("default", map[string]string{"bypass-hook.io/enable": "true"}), ctr("app", nil, podNet, nil))
	if len(adj.GetHooks().GetCreateRuntime()) != 1 || adj.GetAnnotations()["bypass-hook.io/enable"] != "true" {
		t.Errorf("a misspelt opt-in: hooks %v, annotations %v; want the hook and the annotation carried", adj.GetHooks(), adj.GetAnnotations())
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary builds bypass-hook once for the tests that run it.
func buildBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		testnet.SkipOrFail(t, "no go command to build bypass-hook with")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bypass-hook-nri-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "bypass-hook")
		if out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/bypass-hook").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building bypass-hook: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// Pre-registered: the runtime starts the plugin itself from its plugin
// directory (a link to the binary, as the docs say to make), with no
// arguments, and hands it the NRI plugin config. The plugin logs to the
// hook log, since the runtime discards its output, and exits with the
// runtime.
func TestPluginPreRegistered(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	f := newFixture(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	plugins, conf := filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d")
	os.MkdirAll(plugins, 0o755)
	os.MkdirAll(conf, 0o755)
	if err := os.Symlink(bin, filepath.Join(plugins, "10-bypass-hook")); err != nil {
		t.Fatal(err)
	}
	pc := fmt.Sprintf("config: %s\nbinary: %s\n", f.cfgPath, f.binary)
	if err := os.WriteFile(filepath.Join(conf, "10-bypass-hook.conf"), []byte(pc), 0o644); err != nil {
		t.Fatal(err)
	}

	rt := newRuntime(t, dir) // starts the plugin and waits for its registration
	adj := rt.create(pod("default", map[string]string{config.AnnEnabled: "true"}), ctr("app", nil, podNet, nil))
	want := []string{f.binary, "--config", f.cfgPath, "create"}
	if got := hookArgs(adj.GetHooks().GetCreateRuntime(), f.binary); !slices.EqualFunc(got, [][]string{want}, slices.Equal) {
		hl, _ := os.ReadFile(f.hookLog)
		t.Fatalf("createRuntime %v, want [%v]; hook log:\n%s", got, want, hl)
	}
	if adj := rt.create(pod("default", nil), ctr("plain", nil, podNet, nil)); len(adj.GetHooks().GetCreateRuntime()) > 0 {
		t.Errorf("a plain container got hooks under selection: annotated")
	}
	hl, _ := os.ReadFile(f.hookLog)
	if !strings.Contains(string(hl), "NRI: connected") || !strings.Contains(string(hl), `"container":"app"`) {
		t.Errorf("the hook log lacks the plugin's lines:\n%s", hl)
	}

	rt.kill() // containerd dies; the plugin must go by itself (nobody kills it)
	deadline := time.Now().Add(10 * time.Second)
	for running(bin) {
		if time.Now().After(deadline) {
			t.Fatalf("the pre-registered plugin %s still runs 10s after the runtime stopped", bin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running tells whether a process runs the executable at path.
func running(path string) bool {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if exe, err := os.Readlink(filepath.Join("/proc", p.Name(), "exe")); err == nil && exe == path {
			return true
		}
	}
	return false
}

// Issue 10, hole 6: a plugin started with no config file (no --config, no
// BYPASS_HOOK_CONFIG, and the default file absent) behaved as with an
// empty config and fenced nothing. It now fails closed as with a broken
// config: every container outside kube-system gets the hook, told the
// default file, which refuses it while the file is missing.
func TestPluginMissingConfigFailsClosed(t *testing.T) {
	if _, err := os.Stat(config.DefaultPath); err == nil {
		t.Skipf("%s exists on this machine: the test needs it absent", config.DefaultPath)
	}
	t.Setenv(config.EnvVar, "")
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	f := newFixture(t, "proxies: [198.51.100.1:3128]\n")
	logBuf := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(logBuf)
	p, err := nriplugin.New(nriplugin.Options{SocketPath: rt.socket(), Binary: f.binary, Log: log})
	if err != nil {
		t.Fatalf("a missing default config stopped the plugin (NRI would let containers start unfenced): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("plugin log:\n%s", logBuf)
		}
	})
	rt.waitRegistered()
	wantCreate := []string{f.binary, "--config", config.DefaultPath, "create"}
	adj := rt.create(pod("default", nil), ctr("plain", nil, podNet, nil))
	if got := hookArgs(adj.GetHooks().GetCreateRuntime(), f.binary); !slices.EqualFunc(got, [][]string{wantCreate}, slices.Equal) {
		t.Errorf("with no config file a plain container got createRuntime %v, want [%v]", got, wantCreate)
	}
	if adj := rt.create(pod("kube-system", nil), ctr("dns", nil, podNet, nil)); len(adj.GetHooks().GetCreateRuntime()) > 0 {
		t.Error("a kube-system container got the hook while there is no config")
	}
	state := `{"ociVersion":"1.0.2","id":"no-cfg","status":"creating","pid":1,"bundle":"/"}`
	cmd := exec.Command(buildBinary(t), "--config", config.DefaultPath, "create")
	cmd.Stdin = strings.NewReader(state)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("the injected hook with no config file: %v: %s; want exit 2", err, out)
	}
}

// A config file deleted under a running plugin leaves the last good one in
// force: an annotated container still gets the hook (which refuses it
// while the file is missing), rather than nothing being selected.
func TestPluginDeletedConfigKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	rt := newRuntime(t, dir)
	f := newFixture(t, "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	log := runPlugin(t, rt.socket(), f)
	rt.waitRegistered()
	if err := os.Remove(f.cfgPath); err != nil {
		t.Fatal(err)
	}
	on := map[string]string{config.AnnEnabled: "true"}
	adj := rt.create(pod("default", on), ctr("app", nil, podNet, nil))
	want := []string{f.binary, "--config", f.cfgPath, "create"}
	if got := hookArgs(adj.GetHooks().GetCreateRuntime(), f.binary); !slices.EqualFunc(got, [][]string{want}, slices.Equal) {
		t.Errorf("after the config was deleted an annotated container got createRuntime %v, want [%v]", got, want)
	}
	if !strings.Contains(log.String(), "keeps the last good one") {
		t.Errorf("the plugin did not say it keeps the last good config:\n%s", log)
	}
}
