// SPDX-License-Identifier: Apache-2.0

//go:build nribench

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

// Only the bench binary that nriSyncFigures builds with -tags nribench
// links the NRI plugin (see nri_exec.go).
func init() { nriOnly = nriSyncFiguresHere }

// nriSyncFiguresHere prints the cost of the NRI plugin's synchronization
// with 100 running pods, in 5 rounds, in this process.
func nriSyncFiguresHere(w io.Writer, dir, hookBin string) error {
	r, err := nriSyncBench(dir, hookBin, 100, 5)
	if err != nil {
		return err
	}
	r.print(w)
	return nil
}

// nriReport is what the NRI plugin's synchronization costs with pods
// running unfenced (the plugin was away while they started), and again at
// a restart with all of them fenced, per round.
type nriReport struct {
	pods       int
	none, all  []run // wall and CPU of the plugin process, per round
	fenced     bool  // every pod ended fenced (rules and record) in every round
	unchanged  bool  // the synchronization with all fenced changed no record
	firstError string
}

// nriSyncBench runs, rounds times, a synchronization of the NRI plugin as
// containerd drives it after the plugin's restart: pods pod sandboxes in
// network namespaces of their own (bind-mounted to a path, as CNI's are,
// each with a process in it), one running container each that started
// without the hook, selected by the config (selection: all); then a new
// plugin (a restart) synchronizes again with every one fenced. Each is
// timed from the Synchronize call to the end of the late fencing (the
// plugin ready), wall and the process's CPU time, in this process as the
// plugin runs in its own.
func nriSyncBench(dir, hookBin string, pods, rounds int) (*nriReport, error) {
	r := &nriReport{pods: pods, fenced: true, unchanged: true}
	for round := range rounds {
		if err := r.round(filepath.Join(dir, fmt.Sprintf("nri-%d", round)), hookBin); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *nriReport) round(dir string, hookBin string) error {
	state, nsDir := filepath.Join(dir, "state"), filepath.Join(dir, "netns")
	for _, d := range []string{state, nsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The records live on a tmpfs, as in /run/bypass-hook on a node: their
	// writes are synced, which on a disk would time the disk.
	if err := unix.Mount("tmpfs", state, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size=64m"); err != nil {
		return fmt.Errorf("a tmpfs for the records at %s: %w", state, err)
	}
	defer unix.Unmount(state, unix.MNT_DETACH)
	cfg := filepath.Join(dir, "config.yaml")
	y := fmt.Sprintf("%sbackend: nftables\nstateDir: %s\n", policyYAML, state)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return err
	}
	nss, stop, err := startNamespaces(r.pods)
	defer stop()
	if err != nil {
		return err
	}
	var sandboxes []*api.PodSandbox
	var ctrs []*api.Container
	var paths []string
	defer func() {
		for _, p := range paths {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	}()
	for i, n := range nss {
		// containerd's CNI setup: the sandbox's namespace bind-mounted to a
		// file of its own, which NRI reports as the pod's.
		p := filepath.Join(nsDir, "cni-"+strconv.Itoa(i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return err
		}
		if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/net", n.pid), p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting the namespace of pid %d to %s: %w", n.pid, p, err)
		}
		paths = append(paths, p)
		id := fmt.Sprintf("bench-pod-%d", i)
		nsList := []*api.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "network", Path: p}, {Type: "mount"}}
		sandboxes = append(sandboxes, &api.PodSandbox{Id: id, Name: id, Namespace: "bench", Uid: id,
			Linux: &api.LinuxPodSandbox{Namespaces: nsList}})
		ctrs = append(ctrs, &api.Container{Id: fmt.Sprintf("bench-ctr-%d", i), PodSandboxId: id, Name: "app",
			State: api.ContainerState_CONTAINER_RUNNING, Pid: uint32(n.pid), Linux: &api.LinuxContainer{Namespaces: nsList}})
	}

	none, err := nriSync(cfg, hookBin, sandboxes, ctrs)
	if err != nil {
		return err
	}
	before, err := readRecords(state)
	if err != nil {
		return err
	}
	if why := checkFenced(before, ctrs, paths); why != "" {
		r.fenced = false
		r.firstError = why
	}
	all, err := nriSync(cfg, hookBin, sandboxes, ctrs)
	if err != nil {
		return err
	}
	after, err := readRecords(state)
	if err != nil {
		return err
	}
	if why := checkFenced(after, ctrs, paths); why != "" {
		r.fenced = false
		r.firstError = why
	}
	for id, data := range before {
		if after[id] != data {
			r.unchanged = false
		}
	}
	r.none, r.all = append(r.none, none), append(r.all, all)
	return nil
}

// nriSync starts a plugin as a restart does (New, the runtime's
// Configure), then times its synchronization to the end of its late
// fencing.
func nriSync(cfg, hookBin string, pods []*api.PodSandbox, ctrs []*api.Container) (run, error) {
	// As `bypass-hook nri` logs: JSON lines at info, formatted and written.
	log := logging.New(io.Discard, logging.JSON, false)
	p, err := nriplugin.New(nriplugin.Options{Binary: hookBin, Config: cfg, Log: log})
	if err != nil {
		return run{}, err
	}
	ctx := context.Background()
	if _, err := p.Configure(ctx, "", "bench", "0"); err != nil {
		return run{}, err
	}
	cpu0 := selfCPU()
	start := time.Now()
	if _, err := p.Synchronize(ctx, pods, ctrs); err != nil {
		return run{}, fmt.Errorf("NRI Synchronize: %w", err)
	}
	for {
		ready, why := p.Synchronized()
		if ready {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return run{}, fmt.Errorf("NRI: the late fencing of %d pods did not end within 5 minutes: %s", len(pods), why)
		}
		time.Sleep(time.Millisecond)
	}
	wall := time.Since(start)
	return run{dur: wall, cpu: selfCPU() - cpu0}, nil
}

// selfCPU is this process's user+system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readRecords returns the state directory's records, as saved, by owner.
func readRecords(state string) (map[string]string, error) {
	store, err := records.Open(state)
	if err != nil {
		return nil, err
	}
	keys, err := store.Keys()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range keys {
		rec, err := store.Load(k)
		if err != nil || rec == nil {
			return nil, fmt.Errorf("record %s: %v", k, err)
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		for _, o := range rec.Owners {
			out[o.ID] = string(data)
		}
	}
	return out, nil
}

// checkFenced says what is wrong, "" when every container has a record
// that names its pod's namespace and the namespace holds the fence's
// table with rules in it.
func checkFenced(recs map[string]string, ctrs []*api.Container, paths []string) string {
	if len(recs) != len(ctrs) {
		return fmt.Sprintf("%d containers own a record, want %d", len(recs), len(ctrs))
	}
	for i, c := range ctrs {
		if recs[c.Id] == "" {
			return "no record owned by " + c.Id
		}
		fd, err := unix.Open(paths[i], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Sprintf("%s: %v", paths[i], err)
		}
		n, err := fenceRules(fd)
		unix.Close(fd)
		if err != nil || n == 0 {
			return fmt.Sprintf("%s: %d rules in table inet bypass_hook (%v)", paths[i], n, err)
		}
	}
	return ""
}

// fenceRules counts the rules of the nftables fence in the namespace fd.
// The plugin runs in this process: the socket is made on a thread of
// netns.In, never the first (nftables' own WithNetNSFd joins on a
// goroutine Go may put there, and /proc/self/ns/net would then lie).
func fenceRules(fd int) (n int, err error) {
	err = netns.In("/proc/self/fd/"+strconv.Itoa(fd), func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == "bypass_hook" })
		if i < 0 {
			return nil
		}
		rules, err := c.GetRules(tables[i], &nftables.Chain{Name: "output", Table: tables[i]})
		n = len(rules)
		return err
	})
	return n, err
}

func (r *nriReport) print(w io.Writer) {
	med := func(rs []run) (time.Duration, time.Duration) {
		return median(durations(rs)), median(cpuTimes(rs))
	}
	nw, nc := med(r.none)
	aw, ac := med(r.all)
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	fmt.Fprintf(w, "\nNRI synchronization with %d running pods (nftables; the plugin's Synchronize to the end of its late fencing, in-process; medians of %d rounds):\n", r.pods, len(r.none))
	fmt.Fprintf(w, "NRI synchronization with %d running pods, none fenced: %s wall, %s CPU; all %d fenced: %s; again with all fenced: %s wall, %s CPU; records unchanged: %s\n",
		r.pods, ms(nw), ms(nc), r.pods, yes(r.fenced), ms(aw), ms(ac), yes(r.unchanged))
	fmt.Fprintf(w, "  per pod: %s wall, %s CPU to fence; %s wall, %s CPU when fenced already\n",
		ms(nw/time.Duration(r.pods)), ms(nc/time.Duration(r.pods)), ms(aw/time.Duration(r.pods)), ms(ac/time.Duration(r.pods)))
	if r.firstError != "" {
		fmt.Fprintf(w, "  not fenced: %s\n", r.firstError)
	}
}
