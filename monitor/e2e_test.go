// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/monitor/attrib/attribtest"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/status"
)

// The tests in this file run the bypass-hook binary as root: the hook as a
// runtime runs it, the monitor as an operator does, in namespaces the tests
// make (testnet's lab, or a sleeping process's namespace with a veth pair
// of its own).

// hookBin is the bypass-hook binary, built by TestMain; empty without root.
var hookBin string

func TestMain(m *testing.M) {
	attribtest.MaybeAttempt()
	os.Exit(testnet.Main(m, &hookBin))
}

// eventWait is how soon an attempt must show as an event.
const eventWait = 2 * time.Second

// writeConfig writes a config with a state directory and hook log of its
// own, and returns its path and the hook log's.
func writeConfig(t *testing.T, body string) (cfgPath, hookLog string) {
	t.Helper()
	dir := t.TempDir()
	hookLog = filepath.Join(dir, "hook.log")
	cfgPath = filepath.Join(dir, "config.yaml")
	body += fmt.Sprintf("stateDir: %s\nhookLog: %s\n", filepath.Join(dir, "state"), hookLog)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, hookLog
}

// monitorProc is a running `bypass-hook monitor`.
type monitorProc struct {
	cmd     *exec.Cmd
	metrics string // host:port
	stderr  *syncBuffer

	mu      sync.Mutex
	events  []Event
	arrived []time.Time // when the test read each event
	bad     []string    // stdout lines that are no event
}

// startMonitor runs the monitor and waits until it follows the fences.
func startMonitor(t *testing.T, cfgPath string, args ...string) *monitorProc {
	t.Helper()
	return startMonitorUnder(t, nil, cfgPath, args...)
}

// startMonitorUnder runs the monitor as startMonitor does, under the
// command prefix (e.g. setpriv and its flags).
func startMonitorUnder(t *testing.T, prefix []string, cfgPath string, args ...string) *monitorProc {
	t.Helper()
	argv := append(append(slices.Clone(prefix), hookBin, "monitor", "--config", cfgPath, "--metrics-addr", "127.0.0.1:0"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	mp := &monitorProc{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = mp.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the monitor: %v", err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev Event
			err := json.Unmarshal(sc.Bytes(), &ev)
			mp.mu.Lock()
			if err != nil {
				mp.bad = append(mp.bad, sc.Text())
			} else {
				mp.events = append(mp.events, ev)
				mp.arrived = append(mp.arrived, time.Now())
			}
			mp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan error, 1)
		go func() { <-readDone; exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the monitor exited with %v on SIGTERM; stderr:\n%s", err, mp.stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("the monitor did not stop within 10s of SIGTERM; stderr:\n%s", mp.stderr.String())
		}
		mp.mu.Lock()
		defer mp.mu.Unlock()
		if len(mp.bad) > 0 {
			t.Errorf("the monitor printed lines that are no event: %q", mp.bad)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(mp.stderr.String(), "\n") {
			var l struct{ Msg, Metrics string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "monitor started" {
				mp.metrics = l.Metrics
				return mp
			}
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("the monitor did not start within 10s; stderr:\n%s", mp.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventsOf returns the events of container id so far.
func (mp *monitorProc) eventsOf(id string) []Event {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	var out []Event
	for _, ev := range mp.events {
		if ev.Container == id {
			out = append(out, ev)
		}
	}
	return out
}

// lastArrival is when the test read the last event of container id.
func (mp *monitorProc) lastArrival(id string) time.Time {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	var last time.Time
	for i, ev := range mp.events {
		if ev.Container == id {
			last = mp.arrived[i]
		}
	}
	return last
}

// waitEvents waits up to timeout for n events of container id and returns
// those there are then.
func (mp *monitorProc) waitEvents(id string, n int, timeout time.Duration) []Event {
	deadline := time.Now().Add(timeout)
	for {
		evs := mp.eventsOf(id)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// scrape reads the monitor's metrics.
func (mp *monitorProc) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := scrapeClient.Get("http://" + mp.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scraping the monitor's metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the monitor's metrics: %v", err)
	}
	return fams
}

// metric sums the series of name whose labels include labels.
func metric(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

func seriesCount(fams map[string]*dto.MetricFamily, name string) int {
	if f := fams[name]; f != nil {
		return len(f.Metric)
	}
	return 0
}

// waitMetric waits until metric name (with labels) reads want.
func (mp *monitorProc) waitMetric(t *testing.T, name string, labels map[string]string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := metric(mp.scrape(t), name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v is %v, not %v, after %v; monitor stderr:\n%s", name, labels, got, want, timeout, mp.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// usage is what the monitor holds: open files (sockets among them) and
// goroutines.
type usage struct {
	fds, goroutines int
	series          int // bypass_hook_attempts_total series
}

func (mp *monitorProc) usage(t *testing.T) usage {
	t.Helper()
	// The files first: the scrape opens a connection of its own.
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", mp.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fams := mp.scrape(t)
	return usage{
		fds:        len(entries),
		goroutines: int(metric(fams, "go_goroutines", nil)),
		series:     seriesCount(fams, "bypass_hook_attempts_total"),
	}
}

// runStatus runs `bypass-hook status --json ID` and returns its one fence.
func runStatus(t *testing.T, cfgPath, id string) status.FenceStatus {
	t.Helper()
	out, err := exec.Command(hookBin, "status", "--config", cfgPath, "--json", id).Output()
	if err != nil {
		t.Fatalf("bypass-hook status %s: %v: %s", id, err, stderrOf(err))
	}
	var fences []status.FenceStatus
	if err := json.Unmarshal(out, &fences); err != nil || len(fences) != 1 {
		t.Fatalf("bypass-hook status --json %s: %v: %s", id, err, out)
	}
	return fences[0]
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// sleeper is a container without a runtime: a sleeping process in a network
// namespace of its own with a veth pair (both ends inside) carrying
// 198.51.100.50/25, fenced and unfenced by running the hook binary with
// the OCI state a runtime would pass.
type sleeper struct {
	id, cfgPath, bundle string
	cmd                 *exec.Cmd
	nsPath              string
}

func newSleeper(t *testing.T, cfgPath string) *sleeper {
	t.Helper()
	testnet.RequireTools(t, "unshare", "sleep", "ip", "nsenter")
	unshare, _ := testnet.Tool("unshare")
	sleep, _ := testnet.Tool("sleep")
	// Random in its first 12 characters, which are all the kernel log
	// prefix carries: two sleepers alike in them share their events
	// (TestMonitorAlikeIDs). As "sleeper-" and 4 random hex digits, two of
	// the churn's 50 at a time were alike about once a run, and their
	// events, named by the 12 characters, counted as lost.
	s := &sleeper{id: testnet.RandName("sl") + testnet.RandName("") + "-sleeper", cfgPath: cfgPath, bundle: t.TempDir()}
	if err := os.WriteFile(filepath.Join(s.bundle, "config.json"), []byte(`{"ociVersion":"1.0.2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(unshare, "--net", sleep, "1000")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting a sleeper: %v", err)
	}
	t.Cleanup(func() { s.kill() })
	s.nsPath = netns.PidPath(s.cmd.Process.Pid)
	own, err := netns.Stat("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if id, err := netns.Stat(s.nsPath); err == nil && id != own {
			break // unshare has made the namespace
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sleeper has no network namespace of its own after 5s")
		}
		time.Sleep(time.Millisecond)
	}
	setup := "link set lo up\nlink add v0 type veth peer name v1\nlink set v1 up\nlink set v0 up\naddr add 198.51.100.50/25 dev v0\n"
	cmd := exec.Command("nsenter", "--net="+s.nsPath, "--", "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(setup)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("setting up the sleeper's namespace: %v: %s", err, out)
	}
	return s
}

func (s *sleeper) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// hook runs a stage of the hook binary for the sleeper.
func (s *sleeper) hook(stage string) error {
	st := map[string]any{"ociVersion": "1.0.2", "id": s.id, "bundle": s.bundle, "status": "creating", "pid": s.cmd.Process.Pid}
	if stage == "poststop" {
		st["status"], st["pid"] = "stopped", 0
	}
	in, _ := json.Marshal(st)
	cmd := exec.Command(hookBin, "--config", s.cfgPath, stage)
	cmd.Stdin = strings.NewReader(string(in))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bypass-hook %s for %s: %v: %s", stage, s.id, err, out)
	}
	return nil
}

// dial connects to addr from inside the sleeper's namespace.
func (s *sleeper) dial(addr string) error {
	return netns.In(s.nsPath, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// kernelTarget prepares log.target kernel: the host's sysctl on for the
// test (and back after it).
func prepareTarget(t *testing.T, target string) {
	if target == "kernel" {
		testnet.KernelNetnsLog(t)
	}
}

func uidOf(ev Event) string {
	if ev.UID == nil {
		return "null"
	}
	return strconv.FormatUint(uint64(*ev.UID), 10)
}

// wantEvent checks an event against what the attempt was.
func wantEvent(t *testing.T, ev Event, id, proto, dst string, dport uint16, uid uint32, action string) {
	t.Helper()
	if ev.Container != id || ev.Proto != proto || ev.Dst != dst || ev.Dport != dport || ev.UID == nil || *ev.UID != uid || ev.Action != action || ev.Hint == "" {
		t.Errorf("event %+v (uid %s); want container %s proto %s dst %s dport %d uid %d action %s, and a hint",
			ev, uidOf(ev), id, proto, dst, dport, uid, action)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
