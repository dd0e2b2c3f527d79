// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scaleReport is what a node with many fences costs: a container's create
// and poststop with them against an empty state directory, status over
// them, and the monitor idle beside them.
type scaleReport struct {
	fences, rounds int
	backends       []string
	// create and poststop per backend, with the fences ("full") and
	// without ("empty").
	create, poststop map[string][]run
	status           []time.Duration
	check            checkScale
	monitor          [2]idle // with none, with the fences
	window, resync   time.Duration
}

// idle is a monitor's cost over a window while nothing happens.
type idle struct {
	cpu float64 // share of one core
	rss int64   // KiB at the window's end
}

// scaleBench fences count namespaces (processes sleeping in them, records
// aged an hour, as on a busy node), then times, in rotating order, a
// create+poststop per backend in a fresh namespace with those records in
// the state directory and with none; then status; then the monitor idle
// with none and with them.
func scaleBench(dir, hookBin, cliBin, bundle string, count, rounds int, window time.Duration) (*scaleReport, error) {
	r := &scaleReport{fences: count, rounds: rounds, backends: []string{"nftables", "iptables"},
		create: map[string][]run{}, poststop: map[string][]run{}, window: window, resync: 10 * time.Second}
	mk := func(name, backend, state string) (*variant, error) {
		v := &variant{name: name, bin: hookBin, backend: backend, state: state,
			cfg: filepath.Join(dir, "scale-"+name+".yaml"), log: filepath.Join(dir, "scale-"+name+".log")}
		y := fmt.Sprintf("%sbackend: %s\nstateDir: %s\nhookLog: %s\n", policyYAML, backend, v.state, v.log)
		return v, os.WriteFile(v.cfg, []byte(y), 0o600)
	}
	full, empty := filepath.Join(dir, "scale-full"), filepath.Join(dir, "scale-empty")
	var variants []*variant
	for _, b := range r.backends {
		for _, where := range []string{"full", "empty"} {
			state := map[string]string{"full": full, "empty": empty}[where]
			v, err := mk(b+"-"+where, b, state)
			if err != nil {
				return nil, err
			}
			variants = append(variants, v)
		}
	}

	fmt.Fprintf(os.Stderr, "bench: fencing %d namespaces for the scale figures\n", count)
	nss, stop, err := startNamespaces(count + 10)
	defer stop()
	if err != nil {
		return nil, err
	}
	if err := fenceAll(variants[0], nss[:count], bundle); err != nil {
		return nil, err
	}
	old := time.Now().Add(-time.Hour)
	recs, _ := filepath.Glob(filepath.Join(full, "netns-*.json"))
	if len(recs) != count {
		return nil, fmt.Errorf("scale: %d records for %d fenced namespaces", len(recs), count)
	}
	for _, p := range recs {
		if err := os.Chtimes(p, old, old); err != nil {
			return nil, err
		}
	}

	pool := nss[count:]
	for round := -1; round < rounds; round++ {
		for k := range variants {
			v := variants[(k+max(round, 0))%len(variants)]
			n := pool[max(round, 0)%len(pool)]
			st := state(fmt.Sprintf("scale-%s-%d", v.name, round), n.pid, bundle)
			c, err := hookRun(v, "create", st)
			if err != nil {
				return nil, err
			}
			p, err := hookRun(v, "poststop", st)
			if err != nil {
				return nil, err
			}
			if round >= 0 {
				r.create[v.name] = append(r.create[v.name], c)
				r.poststop[v.name] = append(r.poststop[v.name], p)
			}
		}
	}

	for range 5 {
		cmd := exec.Command(cliBin, "--config", variants[0].cfg, "status")
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		start := time.Now()
		err := cmd.Run()
		if _, exit := err.(*exec.ExitError); err != nil && !exit {
			return nil, fmt.Errorf("status: %w", err)
		}
		r.status = append(r.status, time.Since(start))
	}
	if r.check, err = checkBench(cliBin, variants[0].cfg, variants[1].cfg); err != nil {
		return nil, err
	}

	for i, v := range []*variant{variants[1], variants[0]} {
		if r.monitor[i], err = monitorIdle(cliBin, v.cfg, window); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// fenceAll runs the creates of nss, eight at a time.
func fenceAll(v *variant, nss []ns, bundle string) error {
	work := make(chan int)
	errs := make([]error, len(nss))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for k := range work {
				_, errs[k] = hookRun(v, "create", state(fmt.Sprintf("scale-live-%d", k), nss[k].pid, bundle))
			}
		})
	}
	for k := range nss {
		work <- k
	}
	close(work)
	wg.Wait()
	return firstErr(errs)
}

// monitorIdle starts the monitor on cfg's state directory, lets it read
// every record, and measures its CPU over window (which holds resyncs)
// and its RSS at the end.
func monitorIdle(cliBin, cfg string, window time.Duration) (idle, error) {
	cmd := exec.Command(cliBin, "--config", cfg, "monitor")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return idle{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(5 * time.Second) // its first read of every record, and the first resync's
	t0, err := cpuTicks(cmd.Process.Pid)
	if err != nil {
		return idle{}, fmt.Errorf("monitor: %w", err)
	}
	start := time.Now()
	time.Sleep(window)
	t1, err := cpuTicks(cmd.Process.Pid)
	if err != nil {
		return idle{}, fmt.Errorf("monitor: %w", err)
	}
	const clkTck = 100 // USER_HZ on Linux
	cpu := float64(t1-t0) / clkTck / time.Since(start).Seconds()
	return idle{cpu: cpu, rss: vmRSS(cmd.Process.Pid)}, nil
}

// cpuTicks is utime+stime of pid (proc(5): fields 14 and 15).
func cpuTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return u + k, nil
}

func vmRSS(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func (r *scaleReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nScale: %d live fences (nftables; each owner's process running in its namespace, records an hour old), %d rounds of create+poststop in a fresh namespace per row, rotating:\n\n", r.fences, r.rounds)
	fmt.Fprintln(w, "Medians of whole-process time, and of the process's CPU time (user+system), which other load on the machine moves less.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| backend | create, none | create, with fences | ratio | CPU ratio | poststop, none | poststop, with fences | ratio | CPU ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	ratios := map[string][2]float64{}
	for _, b := range r.backends {
		ce, cf := median(durations(r.create[b+"-empty"])), median(durations(r.create[b+"-full"]))
		pe, pf := median(durations(r.poststop[b+"-empty"])), median(durations(r.poststop[b+"-full"]))
		cpu := func(rs []run) float64 { return float64(median(cpuTimes(rs))) }
		cc := cpu(r.create[b+"-full"]) / cpu(r.create[b+"-empty"])
		pc := cpu(r.poststop[b+"-full"]) / cpu(r.poststop[b+"-empty"])
		ratios[b] = [2]float64{float64(cf) / float64(ce), float64(pf) / float64(pe)}
		fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %.2fx | %s | %s | %.2fx | %.2fx |\n", b, ms(ce), ms(cf), ratios[b][0], cc, ms(pe), ms(pf), ratios[b][1], pc)
	}
	st := append([]time.Duration{}, r.status...)
	slices.Sort(st)
	none, many := r.monitor[0], r.monitor[1]
	perFence := float64(many.rss-none.rss) / float64(r.fences)
	fmt.Fprintf(w, "\n`bypass-hook status` over %d fences: median %s of %d runs\n", r.fences, ms(median(st)), len(st))
	r.check.print(w, r.fences)
	fmt.Fprintf(w, "monitor idle over %s (log target kernel, resync every %s, prune on): %.2f%% of a core with %d fences, %.2f%% with none; RSS %.1f MB against %.1f MB: %.1f KB per fence\n",
		r.window, r.resync, 100*many.cpu, r.fences, 100*none.cpu, float64(many.rss)/1024, float64(none.rss)/1024, perFence)

	fmt.Fprintln(w, "\nScale targets (reported, not asserted):")
	target := func(what string, got, limit float64) {
		verdict := "met"
		if got > limit {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "  %-62s %6.2f (target <= %.2f): %s\n", what, got, limit, verdict)
	}
	for _, b := range r.backends {
		target(fmt.Sprintf("%s create with %d fences / with none", b, r.fences), ratios[b][0], 1.25)
		target(fmt.Sprintf("%s poststop with %d fences / with none", b, r.fences), ratios[b][1], 1.25)
	}
	target(fmt.Sprintf("status over %d fences, seconds", r.fences), median(st).Seconds(), 0.5)
	target(fmt.Sprintf("monitor idle CPU with %d fences, %% of a core", r.fences), 100*many.cpu, 1)
}
