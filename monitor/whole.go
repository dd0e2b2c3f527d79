// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// ActionNotWhole is the action of an event that says a fence stopped being
// whole: a rule put in front of it, a rule of it changed or gone (see
// backend.Seen). It names no packet.
const ActionNotWhole = "not-whole"

// sourceRules marks events the monitor found by reading a fence's rules.
const sourceRules = "rules"

// checkWhole reads the rules of every live fence once and reports each
// that stopped being whole: one event and a warning when it stops, the
// gauge while it stays so. With Options.Repair it puts the fence back.
func (m *Monitor) checkWhole(now time.Time) {
	m.mu.Lock()
	var live []*fence
	for _, f := range m.fences {
		if !f.unreachable {
			live = append(live, f)
		}
	}
	m.mu.Unlock()

	notWhole := map[string]string{}
	var events []Event
	whole := map[string]readWhole{}
	m.gens.pass++
	read := make(map[string]bool, len(live))
	for _, f := range live {
		// The generation first: a change while the fence is read moves
		// it past what is kept.
		read[f.key] = true
		gen, known := m.gens.read(f, m.gens.fullTurn(f.key, m.opts.Resync))
		if known && m.gens.unchanged(f.key, f.rec, gen, m.opts.Resync) {
			whole[f.key] = m.gens.whole[f.key]
			continue
		}
		why, ok := m.inspect(f.rec)
		if ok && why == "" && known {
			whole[f.key] = readWhole{gen: gen, digests: f.rec.RulesDigest}
		}
		if !ok || why == "" {
			continue
		}
		// A poststop taking the fence out, or a create putting it back,
		// holds the record's lock: look again under it, so that neither
		// counts as a fence that is not whole.
		rec, why, repaired := m.confirm(f.key)
		if rec == nil || why == "" {
			continue
		}
		log := m.opts.Log.WithFields(logrus.Fields{"container": rec.LogID, "netns": rec.Netns.String(), "problem": why})
		if repaired {
			log.Warn("the fence was not whole; put it back whole (--repair)")
			continue
		}
		notWhole[f.key] = why
		m.mu.Lock()
		_, said := m.notWhole[f.key]
		m.mu.Unlock()
		if said {
			continue
		}
		log.Warn("the fence is not whole: it may let traffic past; the next container to start in the namespace puts it back, or run the monitor with --repair")
		events = append(events, Event{Time: now, Container: rec.LogID, Action: ActionNotWhole, Netns: rec.Netns.String(),
			Owners: ownerIDs(rec), Source: sourceRules,
			Hint: "the fence is not whole (" + why + "): find who changed the namespace's rules (a CAP_NET_ADMIN workload, a CNI plugin, an operator); the next container to start there, or `bypass-hook monitor --repair`, puts it back"})
	}
	m.gens.whole = whole
	m.gens.keepOnly(read)
	m.mu.Lock()
	m.notWhole = notWhole
	m.mu.Unlock()
	// The gauge first: whoever reads an event and then the metrics finds
	// the fence counted.
	for _, ev := range events {
		m.print(ev)
	}
}

// confirm reads the record of namespace key and its fence again under the
// record's lock, and with Options.Repair puts a fence that is not whole
// back. rec is nil when the record is gone or cannot be had.
func (m *Monitor) confirm(key string) (rec *records.Record, why string, repaired bool) {
	unlock, err := m.store.Lock(key)
	if err != nil {
		return nil, "", false
	}
	defer unlock()
	rec, err = m.store.Load(key)
	if err != nil || rec == nil {
		if err == nil {
			// The record went meanwhile (a poststop); Lock made its lock
			// file again: leave none behind.
			_ = m.store.Delete(key)
		}
		return nil, "", false
	}
	why, ok := m.inspect(rec)
	if !ok || why == "" || !m.opts.Repair {
		return rec, why, false
	}
	// As create does: hold the namespace, so that the rules go where the
	// record says even if the path's pid is reused meanwhile, check that
	// what is held is the record's namespace, and never the host's.
	ns, closeNs, found := netns.OpenKnown(rec.Netns, rec.NsHandle, rec.Hints())
	if !found {
		return rec, why, false
	}
	defer closeNs()
	if err := netns.NotHost(ns.ID); err != nil {
		m.opts.Log.WithError(err).WithField("container", rec.LogID).Error("not putting a fence back: its record names the host's network namespace")
		return rec, why, false
	}
	b, err := m.opts.NewBackend(rec.Backend)
	if err == nil {
		err = b.Install(ns, rules.NewRuleSet(rec.Policy, rec.LogID, rec.Features))
	}
	if err != nil {
		m.opts.Log.WithError(err).WithField("container", rec.LogID).Error("putting a fence back whole")
		return rec, why, false
	}
	after, ok := m.inspect(rec)
	return rec, why, ok && after == ""
}

// inspect reads f's fence and says what keeps it from being whole ("" when
// it is whole); ok is false when it could not be read (a namespace just
// gone), which says nothing either way.
func (m *Monitor) inspect(rec *records.Record) (why string, ok bool) {
	r, err := backend.Look(rec.Netns, rec.NsHandle, rec.Hints(), rec.Backend, rec.RulesDigest, m.opts.NewBackend)
	//lint:ignore SA5001 Look may hold the namespace's handle with an error too: closed either way.
	defer r.Close()
	if err != nil {
		if r.Backend != nil {
			m.opts.Log.WithError(err).WithField("container", rec.LogID).Debug("reading a fence's rules")
		}
		return "", false
	}
	return r.Why, true
}

func ownerIDs(rec *records.Record) []string {
	var ids []string
	for _, o := range rec.Owners {
		ids = append(ids, o.ID)
	}
	return ids
}
