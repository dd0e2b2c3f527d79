// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"fmt"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// Applied is what Apply did to the fence of one namespace.
type Applied struct {
	Netns     string   `json:"netns"`
	Owners    []string `json:"owners"`
	Backend   string   `json:"backend"`
	OldDigest string   `json:"oldDigest"`
	NewDigest string   `json:"newDigest,omitempty"`
	// Action is "replaced", "current" (already the config's), "namespace
	// gone" or "left as it was" (Error says why).
	Action string `json:"action"`
	Error  string `json:"error,omitempty"`
}

// The actions of Applied.
const (
	AppliedReplaced = "replaced"
	AppliedCurrent  = "current"
	AppliedGone     = "namespace gone"
	AppliedLeft     = "left as it was"
)

// Apply brings every recorded fence to the current config, each namespace
// under its record's lock and replaced atomically, as a container that
// joins after a config change would: the owners' narrowing (what their
// annotations asked for) is kept, the rest is the config's. A namespace is
// reached only through its record: the namespace's file handle (which
// reaches one that only a thread or a socket holds), else its paths and its
// owners' processes; held open and checked to be the recorded one, never
// the host's. It never
// removes a fence; one whose narrowing the config no longer allows (a proxy
// the annotations named is gone) is left as it was, with the reason.
func (h *Hook) Apply() ([]Applied, error) {
	store, err := records.Open(h.Cfg.StateDir)
	if err != nil {
		return nil, err
	}
	keys, err := store.Keys()
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", h.Cfg.StateDir, err)
	}
	var out []Applied
	for _, key := range keys {
		a, ok := h.applyOne(store, key)
		if !ok {
			continue
		}
		log := h.Log.WithField("netns", a.Netns).WithField("owners", a.Owners).WithField("action", a.Action)
		if a.Error != "" {
			log.WithField("error", a.Error).Warn("apply: a fence could not be brought to the config")
		} else {
			log.Info("apply")
		}
		out = append(out, a)
	}
	return out, nil
}

// applyOne brings the fence of key to the config; ok is false when the
// record went meanwhile.
func (h *Hook) applyOne(store *records.Store, key string) (a Applied, ok bool) {
	unlock, err := store.Lock(key)
	if err != nil {
		return Applied{Netns: key, Action: AppliedLeft, Error: err.Error()}, true
	}
	defer unlock()
	rec, err := store.Load(key)
	if rec == nil && err == nil {
		return Applied{}, false
	}
	if err != nil {
		return Applied{Netns: key, Action: AppliedLeft, Error: err.Error()}, true
	}
	a = Applied{Netns: rec.Netns.String(), Backend: rec.Backend, OldDigest: rec.Digest, Action: AppliedLeft}
	for _, o := range rec.Owners {
		a.Owners = append(a.Owners, o.ID)
	}
	if rec.Narrowing == nil {
		a.Error = "recorded by an older bypass-hook, which did not keep what its containers' annotations asked for; it follows the config when its containers are created again"
		return a, true
	}
	p, err := h.Cfg.Narrowed(*rec.Narrowing)
	if err != nil {
		a.Error = err.Error()
		return a, true
	}
	a.NewDigest = p.Digest()
	// An incomplete record's rules may be another policy's, half-way (an
	// apply killed before its save): it is current only once installed.
	if a.NewDigest == rec.Digest && rec.Incomplete == "" {
		a.Action = AppliedCurrent
		return a, true
	}
	ns, closeNs, found := netns.OpenKnown(rec.Netns, rec.NsHandle, rec.Hints())
	if !found {
		a.Action = AppliedGone // the next create or prune removes the record
		return a, true
	}
	defer closeNs()
	if err := netns.NotHost(ns.ID); err != nil {
		a.Error = "the record names the host's network namespace: " + err.Error()
		return a, true
	}
	if err := h.followConfig(store, ns, rec, config.Decision{Fence: true, Policy: p, Narrowing: *rec.Narrowing}, a.NewDigest); err != nil {
		a.Error = err.Error()
		return a, true
	}
	if err := store.Save(rec); err != nil {
		a.Error = fmt.Sprintf("the fence was replaced but its record could not be saved: %v", err)
		return a, true
	}
	a.Action = AppliedReplaced
	return a, true
}
