// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"slices"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// fence is one record as the monitor knows it. It is never changed once
// made: a changed record makes a new fence, so readers need no lock.
type fence struct {
	key    string
	rec    *records.Record // shared with the store's cache: never changed
	prefix string          // what its log rules write first
	gone   time.Time       // when its record vanished (or was replaced); zero while live
	// unreachable: no path leads to the namespace any more (its containers
	// died without a poststop); no socket is opened for it.
	unreachable bool
	// credit is how many kernel log lines its counters vouch for (see
	// credit.go); shared by the fence's copies, which is why it has a lock.
	credit *credit
	// netnsCookie is the namespace's cookie in the attribution programs'
	// map; 0 when attribution is off or the namespace was not reached.
	netnsCookie uint64
	// cookieFailed: the programs could not be given the namespace; said
	// once, not tried again at every resync.
	cookieFailed bool
}

func (f *fence) target() string { return f.rec.Policy.Log.Target }

func (f *fence) logs() bool { return f.rec.Features.Log }

// follow takes in the record of namespace key as it is now: a new fence is
// followed (its socket opened), a changed one replaced, a missing one gone.
func (m *Monitor) follow(ctx context.Context, key string) {
	// The store's cached record while the file is unchanged: a resync of
	// a node of many fences otherwise parses every record again though
	// none changed. The monitor never changes a record it holds.
	rec, err := m.store.Cached(key)
	if err != nil {
		m.opts.Log.WithError(err).WithField("record", key).Warn("reading a record")
		return
	}
	if rec == nil {
		m.markGone(key)
		return
	}
	if m.settled(key, rec) {
		return
	}
	f := &fence{key: key, rec: rec, prefix: rules.LogPrefix(rec.Policy.Log.Prefix, rec.LogID), credit: &credit{}}
	log := m.opts.Log.WithFields(logrus.Fields{"container": rec.LogID, "netns": rec.Netns.String()})
	m.mu.Lock()
	old := m.fences[key]
	m.mu.Unlock()
	if f.netnsCookie, f.cookieFailed = m.cookieOf(f, old, log); old != nil && old.netnsCookie != f.netnsCookie {
		m.unfence(old)
	}
	if old != nil && sameRules(old.rec, rec) {
		f.credit = old.credit // the same rules, the same counters
	}
	kernel := f.target() == config.LogKernel && f.logs() && m.kernelErr == nil
	if kernel {
		// Before the fence is seen (by the kernel log's reader, in the
		// metrics): a packet counted after it is seen and before its credit
		// is primed would count as logged before, and its line be dropped
		// as unverified.
		m.primeCredit(f, log)
	}
	m.mu.Lock()
	m.setFence(f, log)
	sock, closing := m.reuseSocket(f, log)
	m.mu.Unlock()

	switch {
	case kernel:
		if err := m.startKernel(ctx); err != nil {
			m.kernelErr = err
			log.WithError(err).Error("a fence logs to the kernel log, which the monitor cannot read: its attempts are not seen")
		}
	case f.needsSocket() && sock == nil:
		if closing != nil {
			<-closing.done
		}
		m.openSocket(f)
	}
}

// settled says whether the fence of key is followed from record rec, the
// very version the store parsed last time, with nothing left to retry (a
// socket to open, a namespace to give the attribution programs, the
// kernel log or its credit to start): a resync then has nothing to do for
// it, and a node of many fences pays nothing per fence but the look at its
// file.
func (m *Monitor) settled(key string, rec *records.Record) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.fences[key]
	switch {
	case f == nil || f.rec != rec:
		return false
	case m.attr != nil && f.netnsCookie == 0 && !f.cookieFailed:
		return false
	case f.needsSocket():
		s := m.sockets[key]
		return s != nil && s.fence == f && s.group == rec.Policy.Log.Group && !s.stopped()
	case f.target() == config.LogKernel && f.logs() && m.kernelErr == nil:
		f.credit.mu.Lock()
		primed := f.credit.primed
		f.credit.mu.Unlock()
		return primed && m.kernel != nil
	}
	return true
}

// setFence makes f the fence of its namespace, in place of the one followed
// so far: the same rules, log id and backend are the same fence, still
// unreachable while its owners are the same; anything else replaces it.
// The caller holds mu.
func (m *Monitor) setFence(f *fence, log *logrus.Entry) {
	rec := f.rec
	old := m.fences[f.key]
	switch {
	case old != nil && sameRules(old.rec, rec):
		f.unreachable = old.unreachable && sameOwners(old.rec, rec)
		m.reindex(old, f)
	case old != nil:
		m.retire(old)
		m.reindex(nil, f)
		log.Info("fence replaced")
	default:
		m.reindex(nil, f)
		log.WithFields(logrus.Fields{"mode": rec.Policy.Mode, "target": rec.Policy.Log.Target}).Info("following fence")
	}
	m.fences[f.key] = f
	if old == nil || old.rec.LogID != rec.LogID {
		m.warnAlike(f)
	}
}

// sameRules says whether record b fences with the very rules of record a
// (a change of owners, say): the fence keeps a's counters, and its credit.
func sameRules(a, b *records.Record) bool {
	return a.Digest == b.Digest && a.LogID == b.LogID && a.Backend == b.Backend
}

// needsSocket is whether the monitor reads f's attempts from an NFLOG
// socket: no path reaches an unreachable namespace to open one in.
func (f *fence) needsSocket() bool {
	return f.target() == config.LogNflog && f.logs() && !f.unreachable
}

// reuseSocket gives f the NFLOG socket of its namespace that it can keep:
// the one it has, or one revived from its drain (the namespace fenced again
// at once, as when a pod's only container restarts: a new socket could not
// bind the group while the old one holds it); a socket f does not need is
// let go. sock nil means f needs a new socket if any; closing is a socket
// of the group that must close before a new one binds it. The caller
// holds mu.
func (m *Monitor) reuseSocket(f *fence, log *logrus.Entry) (sock, closing *nflogSocket) {
	key, group := f.key, f.rec.Policy.Log.Group
	needs := f.needsSocket()
	sock = m.sockets[key]
	if sock != nil && (!needs || sock.group != group || sock.stopped()) {
		m.drain(key)
		sock = nil
	}
	if needs && sock == nil {
		if i := slices.IndexFunc(m.draining, func(d *nflogSocket) bool { return d.key == key && d.group == group }); i >= 0 {
			d := m.draining[i]
			if d.revive() {
				m.draining = slices.Delete(m.draining, i, i+1)
				m.sockets[key] = d
				sock = d
				log.Debug("NFLOG socket kept: the namespace was fenced again while it drained")
			} else {
				closing = d
			}
		}
	}
	if sock != nil {
		m.bindSocket(sock, f)
	}
	return sock, closing
}

// warnAlike says when f's kernel log prefix is another live fence's: their
// containers' ids are alike in their first 12 characters, and the kernel
// log cannot tell their attempts apart. The caller holds mu.
func (m *Monitor) warnAlike(f *fence) {
	if f.target() != config.LogKernel {
		return
	}
	for _, o := range m.byPrefix[f.prefix] {
		if o.gone.IsZero() && o.target() == config.LogKernel && o.rec.LogID != f.rec.LogID {
			m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "other": o.rec.LogID, "prefix": f.prefix}).
				Warn("two fenced containers have ids alike in their first 12 characters: with log.target kernel their events cannot be told apart and name both (log.target nflog can)")
			return
		}
	}
}

// drain stops the socket of key, letting it read what is queued; the
// caller holds mu.
func (m *Monitor) drain(key string) {
	if s := m.sockets[key]; s != nil {
		s.stop(nflogDrain)
		delete(m.sockets, key)
		m.draining = append(m.draining, s)
	}
}

// reindex puts fence now where was is in byPrefix; either may be nil. The
// caller holds mu.
func (m *Monitor) reindex(was, now *fence) {
	if was != nil {
		l := slices.DeleteFunc(m.byPrefix[was.prefix], func(f *fence) bool { return f == was })
		if len(l) == 0 {
			delete(m.byPrefix, was.prefix)
		} else {
			m.byPrefix[was.prefix] = l
		}
	}
	if now != nil {
		m.byPrefix[now.prefix] = append(m.byPrefix[now.prefix], now)
	}
}

func sameOwners(a, b *records.Record) bool {
	return slices.EqualFunc(a.Owners, b.Owners, func(x, y records.Owner) bool { return x.ID == y.ID && x.Pid == y.Pid })
}

func (m *Monitor) markUnreachable(f *fence) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fences[f.key] == f {
		g := *f
		g.unreachable = true
		m.fences[f.key] = &g
		m.reindex(f, &g)
		if s := m.sockets[f.key]; s != nil && s.fence == f {
			s.fence = &g
		}
	}
}

// retire moves a live fence to the gone ones; the caller holds mu and
// takes it out of fences.
func (m *Monitor) retire(f *fence) {
	g := *f
	g.gone = time.Now()
	m.gone = append(m.gone, &g)
	m.reindex(f, &g)
}

// markGone marks the fence of key gone: its socket drains and closes, and
// the fence is forgotten after Forget.
func (m *Monitor) markGone(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drain(key)
	m.gens.drop(key)
	f := m.fences[key]
	if f == nil {
		return
	}
	m.retire(f)
	delete(m.fences, key)
	m.unfence(f)
	m.recent.drop(f.rec.Netns.String())
	m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "netns": f.rec.Netns.String()}).Info("fence gone")
}

// releaseDead closes the sockets of namespaces no path reaches any more:
// their containers died without a poststop (a crashed runtime), and the
// socket alone would keep the namespace alive until the record is pruned.
func (m *Monitor) releaseDead() {
	m.mu.Lock()
	var check []*fence
	for key := range m.sockets {
		check = append(check, m.fences[key])
	}
	m.mu.Unlock()
	var reached map[netns.ID]bool // one look through every process, for all
	for _, f := range check {
		if f == nil || records.AnyOwnerRemains(f.rec.Netns, f.rec.Owners) {
			continue
		}
		// A path, not the file handle: our own NFLOG socket holds the
		// namespace, so it always opens by its handle.
		if pathReaches(f.rec) {
			continue
		}
		if reached == nil {
			reached = netns.Reached()
		}
		if reached[f.rec.Netns] {
			continue
		}
		m.markUnreachable(f)
		m.mu.Lock()
		if s := m.sockets[f.key]; s != nil {
			s.stop(0)
			delete(m.sockets, f.key)
		}
		m.mu.Unlock()
		m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "netns": f.rec.Netns.String()}).Info("the fence's containers are gone without a poststop; closed its NFLOG socket")
	}
}

// pathReaches says whether one of the record's own paths still reaches its
// namespace.
func pathReaches(rec *records.Record) bool {
	return slices.ContainsFunc(rec.Paths, func(p string) bool {
		id, ok := netns.Peek(p)
		return ok && id == rec.Netns
	})
}

// expire forgets fences gone for longer than Forget, and their series.
func (m *Monitor) expire(now time.Time) {
	m.mu.Lock()
	var forget []*records.Record
	kept := m.gone[:0]
	for _, g := range m.gone {
		if now.Sub(g.gone) < m.opts.Forget {
			kept = append(kept, g)
			continue
		}
		m.reindex(g, nil)
		forget = append(forget, g.rec)
	}
	clear(m.gone[len(kept):])
	m.gone = kept
	// The series still in use: the fences' own, and those under the short
	// ids of events of containers whose ids are alike.
	inUse := map[seriesLabels]bool{}
	for _, f := range m.fences {
		inUse[labelsOf(f.rec)], inUse[seriesLabels{container: rules.ShortID(f.rec.LogID)}] = true, true
	}
	for _, g := range m.gone {
		inUse[labelsOf(g.rec)], inUse[seriesLabels{container: rules.ShortID(g.rec.LogID)}] = true, true
	}
	m.mu.Unlock()
	for _, rec := range forget {
		for _, l := range []seriesLabels{labelsOf(rec), {container: rules.ShortID(rec.LogID)}} {
			if !inUse[l] {
				m.metrics.attempts.DeletePartialMatch(prometheus.Labels{"namespace": l.namespace, "pod": l.pod, "container": l.container})
			}
		}
	}
}
