package monitor

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/hook/netns"
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
	for _, f := range live {
		why, ok := m.inspect(f)
		if !ok || why == "" {
			continue
		}
		log := m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "netns": f.rec.Netns.String(), "problem": why})
		if m.opts.Repair && m.repair(f) {
			log.Warn("the fence was not whole; put it back whole (--repair)")
			continue
		}
		notWhole[f.key] = why
		m.mu.Lock()
		_, known := m.notWhole[f.key]
		m.mu.Unlock()
		if known {
			continue
		}
		log.Warn("the fence is not whole: it may let traffic past; the next container to start in the namespace puts it back, or run the monitor with --repair")
		m.print(Event{Time: now, Container: f.rec.LogID, Action: ActionNotWhole, Netns: f.rec.Netns.String(),
			Owners: ownerIDs(f), Source: sourceRules,
			Hint: "the fence is not whole (" + why + "): find who changed the namespace's rules (a CAP_NET_ADMIN workload, a CNI plugin, an operator); the next container to start there, or `bypass-hook monitor --repair`, puts it back"})
	}
	m.mu.Lock()
	m.notWhole = notWhole
	m.mu.Unlock()
}

// inspect reads f's fence and says what keeps it from being whole ("" when
// it is whole); ok is false when it could not be read (a namespace just
// gone), which says nothing either way.
func (m *Monitor) inspect(f *fence) (why string, ok bool) {
	ns, found := netns.Find(f.rec.Netns, f.rec.Hints()...)
	if !found {
		return "", false
	}
	b, err := m.opts.NewBackend(f.rec.Backend)
	if err != nil {
		return "", false
	}
	seen, err := b.Inspect(ns)
	if err != nil {
		m.opts.Log.WithError(err).WithField("container", f.rec.LogID).Debug("reading a fence's rules")
		return "", false
	}
	whole, why := seen.Whole(f.rec.RulesDigest)
	if whole {
		return "", true
	}
	return why, true
}

// repair installs f's rules again, under the record's lock as the hook
// does, and reports whether the fence is whole after it.
func (m *Monitor) repair(f *fence) bool {
	unlock, err := m.store.Lock(f.key)
	if err != nil {
		return false
	}
	defer unlock()
	ns, found := netns.Find(f.rec.Netns, f.rec.Hints()...)
	if !found {
		return false
	}
	b, err := m.opts.NewBackend(f.rec.Backend)
	if err == nil {
		err = b.Install(ns, rules.NewRuleSet(f.rec.Policy, f.rec.LogID, f.rec.Features))
	}
	if err != nil {
		m.opts.Log.WithError(err).WithField("container", f.rec.LogID).Error("putting a fence back whole")
		return false
	}
	why, ok := m.inspect(f)
	return ok && why == ""
}

func ownerIDs(f *fence) []string {
	var ids []string
	for _, o := range f.rec.Owners {
		ids = append(ids, o.ID)
	}
	return ids
}
