// Command bench times whole runs of the bypass-hook binary, as a runtime
// runs it: `bypass-hook create` with an OCI state on stdin for a process in
// a fresh network namespace, then `poststop`. It compares the iptables
// backend (one iptables-restore batch per family), the nftables backend
// (one netlink transaction) and the per-rule way (a binary built with
// -tags perrule: one go-iptables AppendUnique per rule), on the same
// namespaces in one run, then runs bursts of parallel creates. It needs
// root; `make bench` builds both binaries and runs it.
package main

import (
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

// variant is one way to fence: a binary and a backend.
type variant struct {
	name    string
	bin     string
	backend string
	cfg     string // config file
	state   string // state directory
	log     string // hook log
}

// run is one hook process: how long it took, its peak RSS and its exit.
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
	hookBin := flag.String("hook", "bin/bypass-hook", "the production binary")
	perruleBin := flag.String("perrule", "bin/bypass-hook-perrule", "the binary built with -tags perrule")
	n := flag.Int("n", 40, "create+poststop rounds per variant")
	pool := flag.Int("namespaces", 10, "namespaces the rounds cycle through")
	burstSize := flag.Int("burst", 50, "parallel creates in a burst, each in a namespace of its own")
	bursts := flag.Int("bursts", 3, "bursts per variant")
	env := flag.String("hookenv", "", "comma-separated VAR=value for the hook processes, to try runtime settings (runtimes give hooks an empty environment)")
	flag.Parse()
	if *env != "" {
		hookEnv = strings.Split(*env, ",")
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (it makes network namespaces and fences them)")
		os.Exit(2)
	}
	if err := bench(*hookBin, *perruleBin, *n, *pool, *burstSize, *bursts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func bench(hookBin, perruleBin string, n, poolSize, burstSize, bursts int) error {
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
			return err
		}
	}
	bundle := filepath.Join(dir, "bundle")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","process":{"capabilities":{}}}`), 0o600); err != nil {
		return err
	}

	nss, stop, err := startNamespaces(max(poolSize, burstSize))
	defer stop()
	if err != nil {
		return err
	}

	results := map[string]*result{}
	for _, v := range variants {
		results[v.name] = &result{}
	}
	// Floors: a process that only starts, and a create that reads its
	// config and state and decides not to fence.
	floors, err := measureFloors(hookBin, dir, bundle, nss[0], n)
	if err != nil {
		return err
	}

	// One untimed round warms the page cache for every binary and tool.
	for round := -1; round < n; round++ {
		ns := nss[max(round, 0)%poolSize]
		for k := range variants {
			v := variants[(k+max(round, 0))%len(variants)] // rotate, so no variant always goes first
			st := state(fmt.Sprintf("bench-%s-%d", v.name, round), ns.pid, bundle)
			c, err := hookRun(v, "create", st)
			if err != nil {
				return err
			}
			p, err := hookRun(v, "poststop", st)
			if err != nil {
				return err
			}
			if round >= 0 {
				results[v.name].create = append(results[v.name].create, c)
				results[v.name].poststop = append(results[v.name].poststop, p)
			}
		}
	}

	for i := 0; i < bursts; i++ {
		for k := range variants {
			v := variants[(k+i)%len(variants)]
			b, err := runBurst(v, nss[:burstSize], bundle, i)
			if err != nil {
				return err
			}
			results[v.name].bursts = append(results[v.name].bursts, b)
		}
	}

	report(os.Stdout, variants, results, floors, n, burstSize, hookBin)
	return nil
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

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

type floor struct {
	name string
	runs []run
}

// measureFloors times what every hook run pays before any rule: starting
// the process (`version`), and a create that loads its config, opens its
// log, reads the state and decides not to fence.
func measureFloors(bin, dir, bundle string, n ns, count int) ([]floor, error) {
	cfg := filepath.Join(dir, "unselected.yaml")
	y := fmt.Sprintf("%sselection: annotated\nstateDir: %s\nhookLog: %s\n", policyYAML, filepath.Join(dir, "state-unselected"), filepath.Join(dir, "unselected.log"))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return nil, err
	}
	version := &variant{name: "version", bin: bin}
	unselected := &variant{name: "unselected", bin: bin, cfg: cfg}
	floors := []floor{{name: "process start (`version`)"}, {name: "create, not selected"}}
	for i := -1; i < count; i++ {
		cmd := exec.Command(bin, "version")
		cmd.Env = hookEnv
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s version: %v", version.bin, err)
		}
		v := measured(cmd, time.Since(start))
		u, err := hookRun(unselected, "create", state(fmt.Sprintf("floor-%d", i), n.pid, bundle))
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			floors[0].runs = append(floors[0].runs, v)
			floors[1].runs = append(floors[1].runs, u)
		}
	}
	return floors, nil
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

func report(w io.Writer, variants []*variant, results map[string]*result, floors []floor, n, burstSize int, hookBin string) {
	host, _ := os.Hostname()
	cpu := cpuModel()
	var size int64
	if fi, err := os.Stat(hookBin); err == nil {
		size = fi.Size()
	}
	fmt.Fprintf(w, "\nbypass-hook bench: %d create+poststop rounds per variant, bursts of %d; %s, %d CPUs (%s), kernel %s; hook binary %.1f MB\n\n",
		n, burstSize, host, runtime.NumCPU(), cpu, kernel(), float64(size)/1e6)

	base := median(durations(results["per-rule"].create))
	fmt.Fprintln(w, "| variant | create median | create p99 | vs per-rule | create CPU median | poststop median | burst wall (median) | burst per-hook p99 | burst wall / (N x median) | peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, v := range variants {
		r := results[v.name]
		c := durations(r.create)
		var walls []time.Duration
		var hooks []run
		for _, b := range r.bursts {
			walls = append(walls, b.wall)
			hooks = append(hooks, b.hooks...)
		}
		slices.Sort(walls)
		wall := median(walls)
		fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %s | %s | %s | %s | %.2f | %.1f MB |\n",
			v.name, ms(median(c)), ms(quantile(c, 0.99)), float64(median(c))/float64(base),
			ms(median(cpuTimes(r.create))), ms(median(durations(r.poststop))), ms(wall), ms(quantile(durations(hooks), 0.99)),
			float64(wall)/float64(time.Duration(burstSize)*median(c)),
			float64(maxRSS(r.create, r.poststop, hooks))/1024)
	}
	for _, f := range floors {
		d := durations(f.runs)
		fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %s | | | | | %.1f MB |\n", f.name, ms(median(d)), ms(quantile(d, 0.99)), float64(median(d))/float64(base), ms(median(cpuTimes(f.runs))), float64(maxRSS(f.runs))/1024)
	}

	fmt.Fprintln(w, "\nTargets (reported, not asserted):")
	ratio := func(name string) float64 { return float64(median(durations(results[name].create))) / float64(base) }
	target := func(what string, got, limit float64) {
		verdict := "met"
		if got > limit {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "  %-52s %6.2f (target <= %.2f): %s\n", what, got, limit, verdict)
	}
	target("iptables create median / per-rule median", ratio("iptables"), 0.35)
	target("nftables create median / per-rule median", ratio("nftables"), 0.15)
	nft := results["nftables"]
	var walls []time.Duration
	for _, b := range nft.bursts {
		walls = append(walls, b.wall)
	}
	slices.Sort(walls)
	target(fmt.Sprintf("nftables burst wall / (%d x create median)", burstSize),
		float64(median(walls))/float64(time.Duration(burstSize)*median(durations(nft.create))), 0.8)
	var peak int64
	for _, v := range variants {
		if v.name == "per-rule" {
			continue
		}
		r := results[v.name]
		for _, b := range r.bursts {
			peak = max(peak, maxRSS(r.create, r.poststop, b.hooks))
		}
	}
	target("hook peak RSS, MB (iptables and nftables)", float64(peak)/1024, 25)
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
