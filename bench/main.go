// SPDX-License-Identifier: Apache-2.0

// Command bench times whole runs of the hook binary, as a runtime runs it:
// `create` with an OCI state on stdin for a process in a fresh network
// namespace, then `poststop`. It compares the iptables backend (one
// iptables-restore batch per family), the nftables backend (one netlink
// transaction) and the per-rule way (a binary built with -tags perrule: one
// go-iptables AppendUnique per rule), on the same namespaces in one run,
// then runs bursts of parallel creates. Every figure is also given as a
// ratio to a minimal static Go binary (a hello world), which the bench
// builds and times in the same run, interleaved with the hooks, so the
// ratios hold whatever else the machine is doing. Then the scale figures
// (scale.go) and the churn, which it runs as the monitor's test
// (churn.go). It needs root; `make bench` builds the binaries and runs it,
// from the module's root.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The rule set: the contract's, both families, with a proxy per family,
// DNS and a sidecar uid. The addresses are documentation ones; no traffic is
// sent.
const policyYAML = `proxies: ["198.51.100.1:3128", "[2001:db8:1::1]:3128"]
dns: [198.51.100.53]
allowUids: [1337]
`

// minimalSource is the yardstick: what any Go program pays to start.
const minimalSource = `package main

import "fmt"

func main() { fmt.Println("hello, world") }
`

// variant is one way to fence: a binary and a backend.
type variant struct {
	name    string
	bin     string
	backend string
	cfg     string // config file
	state   string // state directory
	log     string // hook log
}

// run is one process: how long it took, its CPU time and peak RSS.
type run struct {
	dur    time.Duration
	cpu    time.Duration // user + system
	maxRSS int64         // KiB
}

type result struct {
	create, poststop []run
	bursts           []burst
}

type burst struct {
	wall  time.Duration
	hooks []run
}

func main() {
	hookBin := flag.String("hook", "bin/bypass-hook-oci", "the hook binary that runtimes run")
	perruleBin := flag.String("perrule", "bin/bypass-hook-perrule", "the hook binary built with -tags perrule")
	goTool := flag.String("go", "go", "the go command, to build the minimal binary")
	n := flag.Int("n", 40, "rounds: in each, every variant's create+poststop and every floor, in rotating order")
	pool := flag.Int("namespaces", 10, "namespaces the rounds cycle through")
	burstSize := flag.Int("burst", 50, "parallel creates in a burst, each in a namespace of its own")
	bursts := flag.Int("bursts", 3, "bursts per variant")
	cliBin := flag.String("cli", "bin/bypass-hook", "the bypass-hook command, for status and the monitor at scale")
	scale := flag.Int("scale", 1000, "live fences for the scale figures (0: none)")
	scaleRounds := flag.Int("scale-rounds", 20, "rounds of create+poststop per row of the scale figures")
	monitorWindow := flag.Duration("monitor-window", 30*time.Second, "how long the idle monitor is measured")
	churn := flag.Int("churn", 500, "containers per backend and log target in the churn (TestMonitorChurn; 0: none)")
	churnBatch := flag.Int("churn-batch", 50, "containers created and removed at once in the churn")
	flag.StringVar(&runtimeBin, "runtime", "", "the runtime wrapper to time against runc (bin/bypass-hook-runtime); empty: not timed")
	nriDir := flag.String("nri-only", "", "run only the NRI synchronization figures, in DIR (what nriSyncFigures runs, in a binary built with -tags nribench)")
	env := flag.String("hookenv", "", "comma-separated VAR=value for the hook processes, to try runtime settings (runtimes give hooks an empty environment)")
	flag.Parse()
	if *env != "" {
		hookEnv = strings.Split(*env, ",")
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (it makes network namespaces and fences them)")
		os.Exit(2)
	}
	if *nriDir != "" {
		if nriOnly == nil {
			fmt.Fprintln(os.Stderr, "bench: -nri-only needs a binary built with -tags nribench")
			os.Exit(2)
		}
		hook, _ := filepath.Abs(*hookBin)
		if err := nriOnly(os.Stdout, *nriDir, hook); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	sc := scaleOpts{cli: *cliBin, fences: *scale, rounds: *scaleRounds, window: *monitorWindow, churn: *churn, churnBatch: *churnBatch}
	if err := bench(*hookBin, *perruleBin, *goTool, *n, *pool, *burstSize, *bursts, sc); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// scaleOpts are the flags of the scale figures.
type scaleOpts struct {
	cli            string
	fences, rounds int
	window         time.Duration
	// The churn's size: TestMonitorChurn's -churn and -churn-batch.
	churn, churnBatch int
}

func bench(hookBin, perruleBin, goTool string, n, poolSize, burstSize, bursts int, sc scaleOpts) error {
	for _, b := range []string{hookBin, perruleBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%v (run `make bench`, which builds both binaries)", err)
		}
	}
	dir, err := os.MkdirTemp("", "bypass-hook-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	hookBin, _ = filepath.Abs(hookBin)
	perruleBin, _ = filepath.Abs(perruleBin)
	minimalBin, err := buildMinimal(goTool, dir)
	if err != nil {
		return err
	}
	rg, err := newRig(dir, hookBin, perruleBin, minimalBin)
	if err != nil {
		return err
	}
	if err := rg.addWrapper(dir, runtimeBin, hookBin); err != nil {
		return err
	}

	nss, stop, err := startNamespaces(max(poolSize, burstSize))
	defer stop()
	if err != nil {
		return err
	}
	rg.nss, rg.poolSize = nss, poolSize
	if err := rg.rounds(n); err != nil {
		return err
	}
	minimalBursts, err := rg.bursts(minimalBin, burstSize, bursts)
	if err != nil {
		return err
	}

	trace, err := initTrace(hookBin, "version")
	if err != nil {
		return err
	}
	minTrace, err := initTrace(minimalBin)
	if err != nil {
		return err
	}
	r := &report{
		variants: rg.variants, results: rg.results, floors: rg.floors, minimalBursts: minimalBursts,
		n: n, burstSize: burstSize, hookBin: hookBin, minimalBin: minimalBin,
		trace: trace, minimalTrace: minTrace, wrapper: rg.wrapper,
	}
	r.print(os.Stdout)
	stop()

	if sc.fences > 0 {
		cli, err := filepath.Abs(sc.cli)
		if err != nil {
			return err
		}
		s, err := scaleBench(dir, hookBin, cli, rg.bundle, sc.fences, sc.rounds, sc.window)
		if err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		s.print(os.Stdout)
		if err := nriSyncFigures(os.Stdout, goTool, dir, hookBin); err != nil {
			return fmt.Errorf("NRI synchronization: %w", err)
		}
	}
	if sc.churn > 0 {
		c, err := churnBench(goTool, sc.churn, sc.churnBatch)
		if err != nil {
			return fmt.Errorf("churn: %w", err)
		}
		c.print(os.Stdout)
	}
	return nil
}

// rig is the bench's set-up: the hooks it times, the bundle and the
// namespaces their states name, and the figures the rounds and bursts
// collect.
type rig struct {
	variants   []*variant
	unselected *variant // the hook with a config that selects no container
	bundle     string   // the bundle every state names
	nss        []ns
	poolSize   int // the rounds cycle through nss[:poolSize]
	results    map[string]*result
	floors     []*floor
	wrapper    *wrapperBench // nil when not timed
}

// newRig writes in dir the config of every variant, a bundle, and the
// config of the unselected floor. Its namespaces are the caller's to start,
// and to stop.
func newRig(dir, hookBin, perruleBin, minimalBin string) (*rig, error) {
	variants := []*variant{
		{name: "per-rule", bin: perruleBin, backend: "iptables"},
		{name: "iptables", bin: hookBin, backend: "iptables"},
		{name: "nftables", bin: hookBin, backend: "nftables"},
	}
	for _, v := range variants {
		v.state = filepath.Join(dir, "state-"+v.name)
		v.log = filepath.Join(dir, v.name+".log")
		v.cfg = filepath.Join(dir, v.name+".yaml")
		y := fmt.Sprintf("%sbackend: %s\nstateDir: %s\nhookLog: %s\n", policyYAML, v.backend, v.state, v.log)
		if err := os.WriteFile(v.cfg, []byte(y), 0o600); err != nil {
			return nil, err
		}
	}
	bundle := filepath.Join(dir, "bundle")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","process":{"capabilities":{}}}`), 0o600); err != nil {
		return nil, err
	}
	unselected := &variant{name: "unselected", bin: hookBin, cfg: filepath.Join(dir, "unselected.yaml")}
	y := fmt.Sprintf("%sselection: annotated\nstateDir: %s\nhookLog: %s\n", policyYAML, filepath.Join(dir, "state-unselected"), filepath.Join(dir, "unselected.log"))
	if err := os.WriteFile(unselected.cfg, []byte(y), 0o600); err != nil {
		return nil, err
	}

	results := map[string]*result{}
	for _, v := range variants {
		results[v.name] = &result{}
	}
	// The floors: the minimal binary, the hook binary only starting
	// (`version`), and a create that reads its config and state and decides
	// not to fence.
	floors := []*floor{
		{name: "minimal Go binary (hello world)", argv: []string{minimalBin}},
		{name: "process start (`version`)", argv: []string{hookBin, "version"}},
		{name: "create, not selected"},
	}
	return &rig{variants: variants, unselected: unselected, bundle: bundle, results: results, floors: floors}, nil
}

// rounds times n rounds, after one untimed round that warms the page
// cache. Each round runs every step once, starting at a different one, so
// that no step always goes first; the minimal binary is timed among the
// hooks and sees the same load.
func (rg *rig) rounds(n int) error {
	steps := rg.steps()
	for round := -1; round < n; round++ {
		for k := range steps {
			if err := steps[(k+max(round, 0))%len(steps)](round); err != nil {
				return err
			}
		}
	}
	return nil
}

// step is one timing of a round; round -1 is the untimed one.
type step func(round int) error

// steps are the floors, then every variant's create+poststop.
func (rg *rig) steps() []step {
	floors := rg.floors
	steps := []step{
		func(round int) error { return floors[0].time(round) },
		func(round int) error { return floors[1].time(round) },
		func(round int) error {
			u, err := hookRun(rg.unselected, "create", state(fmt.Sprintf("floor-%d", round), rg.nss[0].pid, rg.bundle))
			if err == nil && round >= 0 {
				floors[2].runs = append(floors[2].runs, u)
			}
			return err
		},
	}
	steps = append(steps, rg.wrapperSteps()...)
	for _, v := range rg.variants {
		steps = append(steps, func(round int) error {
			ns := rg.nss[max(round, 0)%rg.poolSize]
			st := state(fmt.Sprintf("bench-%s-%d", v.name, round), ns.pid, rg.bundle)
			c, err := hookRun(v, "create", st)
			if err != nil {
				return err
			}
			p, err := hookRun(v, "poststop", st)
			if err != nil {
				return err
			}
			if round >= 0 {
				rg.results[v.name].create = append(rg.results[v.name].create, c)
				rg.results[v.name].poststop = append(rg.results[v.name].poststop, p)
			}
			return nil
		})
	}
	return steps
}

// bursts runs count bursts of size parallel processes: in each, the
// minimal binary's, then every variant's, in rotating order. It returns
// the minimal binary's.
func (rg *rig) bursts(minimalBin string, size, count int) ([]burst, error) {
	var minimalBursts []burst
	for i := 0; i < count; i++ {
		b, err := minimalBurst(minimalBin, size)
		if err != nil {
			return nil, err
		}
		minimalBursts = append(minimalBursts, b)
		for k := range rg.variants {
			v := rg.variants[(k+i)%len(rg.variants)]
			b, err := runBurst(v, rg.nss[:size], rg.bundle, i)
			if err != nil {
				return nil, err
			}
			rg.results[v.name].bursts = append(rg.results[v.name].bursts, b)
		}
	}
	return minimalBursts, nil
}

// buildMinimal builds a hello world as the project builds its binaries:
// static (CGO_ENABLED=0), stripped (-s -w), -trimpath.
func buildMinimal(goTool, dir string) (string, error) {
	src := filepath.Join(dir, "minimal")
	if err := os.Mkdir(src, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module minimal\n\ngo 1.21\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(minimalSource), 0o600); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "minimal-go")
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the minimal Go binary with %s: %v: %s", goTool, err, bytes.TrimSpace(msg))
	}
	return out, nil
}

// ns is a process sleeping in a network namespace of its own, as a
// container's first process does while createRuntime hooks run.
type ns struct {
	pid int
	cmd *exec.Cmd
}

func startNamespaces(count int) ([]ns, func(), error) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, func() {}, fmt.Errorf("unshare (util-linux) is needed: %w", err)
	}
	var out []ns
	stop := func() {
		for _, n := range out {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		}
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	for range count {
		cmd := exec.Command(unshare, "--net", "sleep", "86400")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone with the bench
		if err := cmd.Start(); err != nil {
			return out, stop, err
		}
		out = append(out, ns{pid: cmd.Process.Pid, cmd: cmd})
		// unshare moves itself before it execs sleep; wait for that.
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
			if got != "" && got != self {
				break
			}
			if time.Now().After(deadline) {
				return out, stop, fmt.Errorf("unshare --net (pid %d) did not move into a namespace of its own", cmd.Process.Pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return out, stop, nil
}

func state(id string, pid int, bundle string) string {
	b, _ := json.Marshal(map[string]any{
		"ociVersion": "1.0.2", "id": id, "status": "creating", "pid": pid, "bundle": bundle,
	})
	return string(b)
}

// hookEnv is the hook processes' environment: empty, as runtimes give it,
// unless -hookenv says otherwise.
var hookEnv = []string{}

// hookRun runs one stage as a runtime does: a bare environment, the state on
// stdin, stdout not read. A failing hook stops the bench.
func hookRun(v *variant, stage, st string) (run, error) {
	cmd := exec.Command(v.bin, "--config", v.cfg, stage)
	cmd.Env = hookEnv
	cmd.Stdin = strings.NewReader(st)
	var errb strings.Builder
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return run{}, fmt.Errorf("%s %s: %v: %s", v.name, stage, err, strings.TrimSpace(errb.String()))
	}
	return measured(cmd, d), nil
}

func measured(cmd *exec.Cmd, d time.Duration) run {
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return run{dur: d, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), maxRSS: ru.Maxrss}
}

// runBurst starts one create per namespace at once, then removes them all.
// Every create must fence: exit 0 under failure: closed, and a record per
// namespace.
func runBurst(v *variant, nss []ns, bundle string, i int) (burst, error) {
	b := burst{hooks: make([]run, len(nss))}
	errs := make([]error, len(nss))
	ids := make([]string, len(nss))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for k, n := range nss {
		ids[k] = fmt.Sprintf("burst-%s-%d-%d", v.name, i, k)
		wg.Go(func() {
			<-gate
			b.hooks[k], errs[k] = hookRun(v, "create", state(ids[k], n.pid, bundle))
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	b.wall = time.Since(start)
	fenced, _ := filepath.Glob(filepath.Join(v.state, "netns-*.json"))
	for k, n := range nss {
		wg.Go(func() {
			if _, err := hookRun(v, "poststop", state(ids[k], n.pid, bundle)); err != nil && errs[k] == nil {
				errs[k] = err
			}
		})
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return b, fmt.Errorf("burst: %w", err)
	}
	if len(fenced) != len(nss) {
		return b, fmt.Errorf("burst of %s: %d creates exited 0 but %d records were made", v.name, len(nss), len(fenced))
	}
	if left, _ := filepath.Glob(filepath.Join(v.state, "netns-*.json")); len(left) > 0 {
		return b, fmt.Errorf("burst of %s: %d records left after poststop", v.name, len(left))
	}
	return b, nil
}

// minimalBurst starts count minimal binaries at once: what a burst of that
// many processes costs on this machine before any hook work.
func minimalBurst(bin string, count int) (burst, error) {
	b := burst{hooks: make([]run, count)}
	errs := make([]error, count)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for k := range count {
		wg.Go(func() {
			<-gate
			cmd := exec.Command(bin)
			cmd.Env = hookEnv
			start := time.Now()
			errs[k] = cmd.Run()
			if errs[k] == nil {
				b.hooks[k] = measured(cmd, time.Since(start))
			}
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	b.wall = time.Since(start)
	if err := firstErr(errs); err != nil {
		return b, fmt.Errorf("burst of the minimal binary: %w", err)
	}
	return b, nil
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// floor is a process that does less than a fence: its runs are timed in
// the rounds, among the hooks.
type floor struct {
	name string
	argv []string // nil: timed by a step of its own
	runs []run
}

func (f *floor) time(round int) error {
	cmd := exec.Command(f.argv[0], f.argv[1:]...)
	cmd.Env = hookEnv
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v", strings.Join(f.argv, " "), err)
	}
	if round >= 0 {
		f.runs = append(f.runs, measured(cmd, time.Since(start)))
	}
	return nil
}

// inittrace is one run's GODEBUG=inittrace=1 output: a line per package
// initialised, in order.
type inittrace struct {
	lines    []string
	packages int
	clock    float64 // ms, all packages' init together
	allocs   int
}

// initTrace runs argv five times with GODEBUG=inittrace=1 and keeps the
// run whose total init clock is the median, so one descheduled run does not
// stand for the binary.
func initTrace(argv ...string) (inittrace, error) {
	var runs []inittrace
	for range 5 {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(slices.Clone(hookEnv), "GODEBUG=inittrace=1")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Run(); err != nil {
			return inittrace{}, fmt.Errorf("GODEBUG=inittrace=1 %s: %v", strings.Join(argv, " "), err)
		}
		runs = append(runs, parseInitTrace(errb.String()))
	}
	slices.SortFunc(runs, func(a, b inittrace) int { return cmp.Compare(a.clock, b.clock) })
	return runs[len(runs)/2], nil
}

// parseInitTrace reads lines such as
// "init net/netip @7.1 ms, 0.034 ms clock, 728 bytes, 18 allocs".
func parseInitTrace(out string) inittrace {
	var t inittrace
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		t.lines = append(t.lines, line)
		t.packages++
		clock, _ := strconv.ParseFloat(f[4], 64)
		allocs, _ := strconv.Atoi(f[9])
		t.clock += clock
		t.allocs += allocs
	}
	return t
}

func durations(rs []run) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = r.dur
	}
	slices.Sort(out)
	return out
}

func cpuTimes(rs []run) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = r.cpu
	}
	slices.Sort(out)
	return out
}

// quantile is the nearest-rank quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(sorted []time.Duration) time.Duration { return quantile(sorted, 0.5) }

func maxRSS(rs ...[]run) int64 {
	var m int64
	for _, r := range rs {
		for _, x := range r {
			m = max(m, x.maxRSS)
		}
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// rel is a figure and its ratio to the minimal binary's same figure.
func rel(d, minimal time.Duration) string {
	return fmt.Sprintf("%s (%.2fx)", ms(d), float64(d)/float64(minimal))
}

type report struct {
	variants      []*variant
	results       map[string]*result
	floors        []*floor
	minimalBursts []burst
	n, burstSize  int
	hookBin       string
	minimalBin    string
	trace         inittrace
	minimalTrace  inittrace
	wrapper       *wrapperBench
}

// stats are the figures of one row.
type stats struct {
	median, p99, cpu time.Duration
	poststop         time.Duration
	wall, burstP99   time.Duration
	burstRatio       float64
	rss              int64 // KiB
}

func (r *report) variantStats(name string) stats {
	res := r.results[name]
	c := durations(res.create)
	var walls []time.Duration
	var hooks []run
	for _, b := range res.bursts {
		walls = append(walls, b.wall)
		hooks = append(hooks, b.hooks...)
	}
	slices.Sort(walls)
	s := stats{
		median: median(c), p99: quantile(c, 0.99), cpu: median(cpuTimes(res.create)),
		poststop: median(durations(res.poststop)),
		wall:     median(walls), burstP99: quantile(durations(hooks), 0.99),
		rss: maxRSS(res.create, res.poststop, hooks),
	}
	s.burstRatio = float64(s.wall) / float64(time.Duration(r.burstSize)*s.median)
	return s
}

func (r *report) minimalStats() stats {
	f := r.floors[0]
	d := durations(f.runs)
	var walls []time.Duration
	var procs []run
	for _, b := range r.minimalBursts {
		walls = append(walls, b.wall)
		procs = append(procs, b.hooks...)
	}
	slices.Sort(walls)
	s := stats{median: median(d), p99: quantile(d, 0.99), cpu: median(cpuTimes(f.runs)),
		wall: median(walls), burstP99: quantile(durations(procs), 0.99), rss: maxRSS(f.runs, procs)}
	s.burstRatio = float64(s.wall) / float64(time.Duration(r.burstSize)*s.median)
	return s
}

func (r *report) print(w io.Writer) {
	r.printHeader(w)
	m := r.minimalStats()
	perRule := r.variantStats("per-rule").median
	r.printTable(w, m, perRule)
	r.printTargets(w, m, perRule)
	r.wrapper.print(w, m.median)
	r.printInitTrace(w)
}

// printHeader says what ran, on what machine, and how to read the figures.
func (r *report) printHeader(w io.Writer) {
	host, _ := os.Hostname()
	size := func(p string) float64 {
		if fi, err := os.Stat(p); err == nil {
			return float64(fi.Size()) / 1e6
		}
		return 0
	}
	fmt.Fprintf(w, "\nbypass-hook bench: %d rounds (create+poststop per variant, each floor once), bursts of %d; %s, %d CPUs (%s), kernel %s; hook binary %s %.1f MB, minimal Go binary %.1f MB\n\n",
		r.n, r.burstSize, host, runtime.NumCPU(), cpuModel(), kernel(), filepath.Base(r.hookBin), size(r.hookBin), size(r.minimalBin))
	fmt.Fprintln(w, "Each time and size is followed by its ratio to the same figure of the minimal Go binary, timed in the same rounds.")
	fmt.Fprintln(w)
}

// printTable is a row per variant, then the floors, the minimal binary
// last; m is the minimal binary's figures.
func (r *report) printTable(w io.Writer, m stats, perRule time.Duration) {
	rss := func(kib int64) string {
		return fmt.Sprintf("%.1f MB (%.2fx)", float64(kib)/1024, float64(kib)/float64(m.rss))
	}
	fmt.Fprintln(w, "| variant | create median | create p99 | vs per-rule | create CPU median | poststop median | burst wall (median) | burst per-hook p99 | burst wall / (N x median) | peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, v := range r.variants {
		s := r.variantStats(v.name)
		fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %s | %s | %s | %s | %.2f | %s |\n",
			v.name, rel(s.median, m.median), rel(s.p99, m.p99), float64(s.median)/float64(perRule),
			rel(s.cpu, m.cpu), rel(s.poststop, m.median), rel(s.wall, m.wall), rel(s.burstP99, m.burstP99),
			s.burstRatio, rss(s.rss))
	}
	for _, f := range r.floors[1:] {
		d := durations(f.runs)
		fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %s | | | | | %s |\n", f.name, rel(median(d), m.median), rel(quantile(d, 0.99), m.p99),
			float64(median(d))/float64(perRule), rel(median(cpuTimes(f.runs)), m.cpu), rss(maxRSS(f.runs)))
	}
	fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %s | | %s | %s | %.2f | %s |\n", r.floors[0].name, rel(m.median, m.median), rel(m.p99, m.p99),
		float64(m.median)/float64(perRule), rel(m.cpu, m.cpu), rel(m.wall, m.wall), rel(m.burstP99, m.burstP99), m.burstRatio, rss(m.rss))
}

// printTargets checks the issue-13 targets against this run's figures.
func (r *report) printTargets(w io.Writer, m stats, perRule time.Duration) {
	fmt.Fprintln(w, "\nTargets (reported, not asserted):")
	target := func(what string, got, limit float64) {
		verdict := "met"
		if got > limit {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "  %-62s %6.2f (target <= %.2f): %s\n", what, got, limit, verdict)
	}
	ipt, nft := r.variantStats("iptables"), r.variantStats("nftables")
	version, unselected := median(durations(r.floors[1].runs)), median(durations(r.floors[2].runs))
	x := func(d time.Duration) float64 { return float64(d) / float64(m.median) }
	target("hook process start (`version`) median / minimal median", x(version), 1.5)
	target("create, nftables median / minimal median", x(nft.median), 2.2)
	target("create, iptables median / minimal median", x(ipt.median), 4.0)
	target("create, not selected median / minimal median", x(unselected), 1.6)
	target("poststop / create median, nftables", float64(nft.poststop)/float64(nft.median), 1.0)
	target("poststop / create median, iptables", float64(ipt.poststop)/float64(ipt.median), 1.0)
	target(fmt.Sprintf("nftables burst wall / (%d x create median)", r.burstSize), nft.burstRatio, 0.8)
	target(fmt.Sprintf("iptables burst wall / (%d x create median)", r.burstSize), ipt.burstRatio, 0.8)
	target("hook peak RSS, MB (iptables and nftables, bursts included)", float64(max(ipt.rss, nft.rss))/1024, 15)
	target("iptables create median / per-rule median", float64(ipt.median)/float64(perRule), 0.35)
	target("nftables create median / per-rule median", float64(nft.median)/float64(perRule), 0.15)
}

// printInitTrace lists the hook binary's package initialisation, against
// the minimal binary's.
func (r *report) printInitTrace(w io.Writer) {
	t, mt := r.trace, r.minimalTrace
	fmt.Fprintf(w, "\nPackage initialisation (GODEBUG=inittrace=1 %s version, the median of 5 runs by total init clock):\n", filepath.Base(r.hookBin))
	fmt.Fprintf(w, "  %d packages, %.2f ms init clock, %d allocs; the minimal Go binary: %d packages, %.2f ms, %d allocs\n",
		t.packages, t.clock, t.allocs, mt.packages, mt.clock, mt.allocs)
	for _, l := range t.lines {
		fmt.Fprintln(w, "    "+l)
	}
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return cmp.Or(strings.TrimSpace(string(data)), "unknown")
}
