// SPDX-License-Identifier: Apache-2.0

package hook

import (
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
// whatever its owners' pid 1 did: the workload controls its pid 1. It
// returns the fences taken out, those kept, and when the next one still in
// its grace period falls due (zero when none is).
func (h *Hook) RemoveAbandonedFences(grace time.Duration, now time.Time) (pruned, kept []Pruned, next time.Time, err error) {
	store, err := records.Open(h.Cfg.StateDir)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	var out []Pruned
	var inUse []Pruned
	_, _, next, err = store.ReapAbandoned(grace, now, func(id netns.ID) string {
		why := netns.InUse(id)
		if why != "" {
			inUse = append(inUse, Pruned{Netns: id.String(), Action: "kept: every owner is stale but " + why})
		}
		return why
	}, func(key string, rec *records.Record) error {
		p := Pruned{Netns: rec.Netns.String()}
		for _, o := range rec.Owners {
			p.Owners = append(p.Owners, o.ID)
		}
		action, err := h.takeDown(store, key, rec, rec.Hints())
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
	return out, inUse, next, err
}
