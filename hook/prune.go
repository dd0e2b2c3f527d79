// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// DefaultPruneGrace is how long a fence whose owners are all stale is
// kept: time for a poststop on its way (the runtime noticing the exit) to
// arrive first and remove it as usual.
const DefaultPruneGrace = 30 * time.Second

// Pruned is a fence that a prune took out, or kept although its owners are
// all stale.
type Pruned struct {
	Netns  string   `json:"netns"`
	Owners []string `json:"owners"` // the containers whose processes were gone
	Action string   `json:"action"`
}

// RemoveAbandonedFences takes out the fences whose every owner is stale (its process
// gone, its pid reused, or in another namespace) since at least grace, and
// whose namespace nothing reaches any more (no thread in it, no socket
// made in it), as the last owner's poststop would: a runtime whose start
// fails (podman) may never call poststop, and the namespace then lives on,
// fenced for nobody. A fence whose namespace still has a process is kept,
// whatever its owners' pid 1 did: the workload controls its pid 1. So is
// one whose owner's first process still runs, wherever it went, or whose
// owner's cgroup still holds a process (a chain of processes that fork and
// exit is never where the scan of /proc looks, and in a container without
// a pid namespace of its own it outlives pid 1). It
// returns the fences taken out, those kept, and when the next one still in
// its grace period falls due (zero when none is).
func (h *Hook) RemoveAbandonedFences(grace time.Duration, now time.Time) (pruned, kept []Pruned, next time.Time, err error) {
	return h.prune(grace, now, true)
}

// ReapAbandonedFences is RemoveAbandonedFences without first tidying what
// hooks killed mid-way left (Store.Sweep, which reads the whole state
// directory and takes every record's lock): for the monitor, which reaps at
// every resync and tidies less often.
func (h *Hook) ReapAbandonedFences(grace time.Duration, now time.Time) (pruned, kept []Pruned, next time.Time, err error) {
	return h.prune(grace, now, false)
}

// UseStore makes prune use s, the monitor's store of the same state
// directory: each record is then parsed, and held, once for both.
func (h *Hook) UseStore(s *records.Store) { h.pruneStore = s }

func (h *Hook) prune(grace time.Duration, now time.Time, sweep bool) (pruned, kept []Pruned, next time.Time, err error) {
	if err := seesHostProcesses(); err != nil {
		return nil, nil, time.Time{}, err
	}
	if err := seesHostCgroups(); err != nil {
		return nil, nil, time.Time{}, err
	}
	// One store for every call: its parsed records serve the next.
	if h.pruneStore == nil || h.pruneStore.Dir != h.Cfg.StateDir {
		if h.pruneStore, err = records.Open(h.Cfg.StateDir); err != nil {
			return nil, nil, time.Time{}, err
		}
	}
	store := h.pruneStore
	// What hooks killed mid-way left: completed where the fence serves a
	// live container, else taken out below with the stale.
	var serr, cerr error
	if sweep {
		var incomplete []string
		incomplete, serr = store.Sweep()
		cerr = h.completeInterrupted(store, incomplete)
	}
	var out []Pruned
	var inUse []Pruned
	_, _, next, err = store.ReapAbandoned(grace, now, func(rec *records.Record) string {
		// InUse goes by the namespace's number, which the kernel gives to
		// the next namespace made once it is freed: asked of a namespace
		// gone by its file handle, it would keep the record for whatever
		// runs in the namespace that has the number now.
		why := ""
		if exists, known := netns.Exists(rec.Netns, rec.NsHandle); exists || !known {
			why = netns.InUse(rec.Netns)
		}
		if why == "" {
			why = records.OwnerRuns(rec)
		}
		if why == "" {
			why = records.OwnerGroupRuns(rec)
		}
		if why != "" {
			inUse = append(inUse, Pruned{Netns: rec.Netns.String(), Action: "kept: every owner is stale but " + why})
		}
		return why
	}, func(key string, rec *records.Record) error {
		p := Pruned{Netns: rec.Netns.String()}
		for _, o := range rec.Owners {
			p.Owners = append(p.Owners, o.ID)
		}
		action, err := h.takeDown(store, rec, rec.Hints())
		p.Action = action
		log := h.Log.WithField("netns", p.Netns).WithField("owners", p.Owners).WithField("log_id", rec.LogID)
		if err != nil {
			log.WithError(err).Error("pruning a fence whose owners' processes are gone")
			return err
		}
		log.WithField("action", action).Info("pruned a fence whose owners' processes are gone without a poststop")
		out = append(out, p)
		return nil
	})
	for _, k := range inUse {
		h.Log.WithField("netns", k.Netns).Debug("kept a fence whose owners are all stale: " + k.Action[len("kept: "):])
	}
	return out, inUse, next, errors.Join(serr, cerr, err)
}

// seesHostProcesses checks that /proc shows the host's processes. Prune
// judges owners by their pids and a namespace's use by every thread: in a
// pid namespace of its own (a container without hostPID or --pid=host)
// every owner would look gone and nothing in use, and running containers
// would lose their fences. Kernel threads are seen only from the host's
// pid namespace, kthreadd at pid 2 first among them.
func seesHostProcesses() error {
	comm, err := os.ReadFile("/proc/2/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "kthreadd" {
		return errors.New("prune runs in a pid namespace of its own (/proc shows no kthreadd at pid 2): every container would look gone, so nothing is pruned; run it in the host's pid namespace (hostPID: true in Kubernetes, --pid=host with Docker)")
	}
	return nil
}

// seesHostCgroups checks that prune runs in the host's cgroup namespace,
// kthreadd's (seesHostProcesses has made sure it is pid 2; pid 1 may be
// closed even to root, as netns.HostIDs finds). The
// records name an owner's cgroup by its path as the runtime's hook saw it,
// from the host's cgroup namespace; in one of its own (Docker's and
// podman's default on cgroup v2, with a cgroup2 mount of its own) that
// path is not there, every owner's group would look empty, and the fence
// of a container without a pid namespace of its own, whose processes
// outlive its pid 1, would be taken out from under them.
func seesHostCgroups() error {
	in, err := records.InHostCgroupNamespace()
	if err != nil {
		return fmt.Errorf("prune cannot tell whether it runs in the host's cgroup namespace (%w), so nothing is pruned; run it as root on the node", err)
	}
	if !in {
		return errors.New("prune runs in a cgroup namespace of its own (not kthreadd's): the owners' cgroups, recorded by their host paths, would look empty, so nothing is pruned; run it in the host's cgroup namespace (--cgroupns=host with Docker or podman, or on the node)")
	}
	return nil
}
