// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"fmt"
	"slices"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// completeInterrupted resolves the records of keys that a hook killed
// mid-way left incomplete (see records.Record.Incomplete), where an owner's process
// still runs in the namespace: the fence the record describes is installed
// whole and the record saved complete, as the next create there would. A
// record whose owners are all gone is left to RemoveAbandonedFences, which takes its
// fence out after the grace period, like any other fence left only to
// stale owners.
func (h *Hook) completeInterrupted(store *records.Store, keys []string) error {
	return store.Incomplete(keys, func(key string, rec *records.Record) error {
		if !slices.ContainsFunc(rec.Owners, func(o records.Owner) bool { return o.Alive(rec.Netns) }) {
			return nil
		}
		log := h.Log.WithField("netns", rec.Netns.String()).WithField("log_id", rec.LogID).WithField("incomplete", rec.Incomplete)
		ns, closeNs, found := netns.OpenKnown(rec.Netns, rec.NsHandle, rec.Hints())
		if !found {
			return nil
		}
		defer closeNs()
		if err := netns.NotHost(ns.ID); err != nil {
			return fmt.Errorf("the record of container %s names the host's network namespace; leaving it alone: %w", rec.LogID, err)
		}
		b, err := h.backend(rec.Backend)
		if err != nil {
			return err
		}
		rs, feat, sums, err := h.install(b, ns, rec.Policy, rec.LogID)
		if err != nil {
			log.WithError(err).Error("completing a fence that a hook left incomplete")
			return fmt.Errorf("completing the fence of network namespace %s: %w", rec.Netns, err)
		}
		rec.Features, rec.RuleNames, rec.RulesDigest = feat, ruleNames(rs), sums
		rec.Installed, rec.Incomplete = time.Now().UTC(), ""
		if err := store.Save(rec); err != nil {
			return err
		}
		log.Warn("completed a fence that a hook killed mid-way left incomplete")
		return nil
	})
}
