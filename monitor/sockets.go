// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/sirupsen/logrus"
)

// bindSocket makes f the fence of socket s; the caller holds mu.
func (m *Monitor) bindSocket(s *nflogSocket, f *fence) {
	if s.fence != nil && s.fence.prefix != f.prefix {
		s.old = s.fence
	}
	s.fence = f
}

// openSocket opens the NFLOG socket of f, or marks f unreachable when no
// path leads to its namespace any more.
func (m *Monitor) openSocket(f *fence) {
	log := m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "netns": f.rec.Netns.String()})
	ns, closeNs, ok := netns.OpenKnown(f.rec.Netns, f.rec.NsHandle, f.rec.Hints())
	if !ok && deniedAny(f.rec.Hints()) {
		// Not gone: hidden from us. Say so rather than give up on it.
		m.metrics.errors.WithLabelValues("nflog").Inc()
		log.Error("no permission to reach the fence's namespace through /proc: the monitor needs CAP_SYS_PTRACE (and the host's pid namespace); trying again at the next resync")
		return
	}
	if !ok {
		m.markUnreachable(f)
		log.Info("the fence's namespace cannot be reached (its containers are gone); no NFLOG socket for it")
		return
	}
	// The socket stays in the namespace it is made in: the descriptor,
	// which would keep the namespace alive, goes at once.
	conn, err := openNflog(ns, f.rec.Policy.Log.Group)
	closeNs()
	if err != nil {
		m.metrics.errors.WithLabelValues("nflog").Inc()
		log.WithError(err).Error("opening the NFLOG socket; trying again at the next resync")
		return
	}
	s := &nflogSocket{key: f.key, conn: conn, group: f.rec.Policy.Log.Group, done: make(chan struct{})}
	m.mu.Lock()
	s.fence = m.fences[f.key]
	m.sockets[f.key] = s
	m.mu.Unlock()
	m.readers.Go(func() {
		s.read(
			func(p nflogPacket, now time.Time) { m.handleNflog(s, p, now) },
			func() { m.metrics.lost.WithLabelValues(sourceNflog).Inc() },
			func(err error) {
				m.metrics.errors.WithLabelValues("nflog").Inc()
				log.WithError(err).Warn("reading the NFLOG socket")
			})
		// Closed: drained, or failed (then the next resync opens another).
		m.mu.Lock()
		if m.sockets[s.key] == s {
			delete(m.sockets, s.key)
		}
		m.draining = slices.DeleteFunc(m.draining, func(d *nflogSocket) bool { return d == s })
		m.mu.Unlock()
	})
	log.WithField("group", s.group).Debug("NFLOG socket open")
}

// deniedAny reports whether a path is there but closed to us.
func deniedAny(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrPermission) {
			return true
		}
	}
	return false
}
