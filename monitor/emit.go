// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"errors"
	"os"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
)

// gauges counts, for the metrics, the containers by mode and the
// namespaces by mode and target of the fences the monitor follows, and
// the NFLOG sockets it holds. Fences whose namespace no path reaches any
// more (containers dead without a poststop) are left out, and so are those
// whose record is marked incomplete: a create saves the record so before
// its rules go in, without their names, and the monitor can read their
// counters (log.target kernel) only from the whole record that follows.
// Shown before, a namespace whose first attempts come as the gauge says
// it is fenced would have them counted before the credit is primed, and
// dropped as unverified (see credit.go, primeCredit in follow).
func (m *Monitor) gauges() (containers map[string]int, namespaces map[[2]string]int, sockets int) {
	containers = map[string]int{}
	namespaces = map[[2]string]int{}
	for _, mode := range []string{config.ModeEnforce, config.ModeAudit} {
		containers[mode] = 0
		for _, target := range []string{config.LogKernel, config.LogNflog} {
			namespaces[[2]string{mode, target}] = 0
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.fences {
		if f.unreachable || f.rec.Incomplete != "" {
			continue
		}
		containers[f.rec.Policy.Mode] += len(f.rec.Owners)
		namespaces[[2]string{f.rec.Policy.Mode, f.target()}]++
	}
	return containers, namespaces, len(m.sockets) + len(m.draining)
}

// handleNflog turns a packet from an NFLOG socket into an event. The
// socket is the namespace's, so the fence is known; a prefix not the
// fence's (nor its previous one's, still queued) is another program's
// NFLOG rule in the same group.
func (m *Monitor) handleNflog(s *nflogSocket, p nflogPacket, now time.Time) {
	m.mu.Lock()
	f := s.fence
	if f != nil && p.Prefix != f.prefix {
		f = nil
		if s.old != nil && p.Prefix == s.old.prefix {
			f = s.old
		}
	}
	m.mu.Unlock()
	if f == nil {
		return
	}
	flow, err := ParsePacket(p.Payload)
	if err != nil {
		m.metrics.errors.WithLabelValues("parse").Inc()
		m.opts.Log.WithError(err).WithField("container", f.rec.LogID).Warn("an NFLOG packet that cannot be read")
		return
	}
	m.emit(m.attributed(newEvent(now, flow, p.UID, p.HasUID, f, sourceNflog), f, flow), labelsOf(f.rec))
}

// emit counts an event under its fence's labels and prints it; counted
// first, so that whoever sees the line finds it in the metrics.
func (m *Monitor) emit(ev Event, l seriesLabels) {
	m.metrics.attempts.WithLabelValues(l.namespace, l.pod, l.container, ev.Proto, ev.Action).Inc()
	m.recent.add(ev)
	m.print(ev)
}

// print writes one event line.
func (m *Monitor) print(ev Event) {
	m.outMu.Lock()
	err := m.enc.Encode(ev)
	m.outMu.Unlock()
	if err != nil {
		m.metrics.errors.WithLabelValues("write").Inc()
		if !errors.Is(err, os.ErrClosed) {
			m.opts.Log.WithError(err).Error("writing an event")
		}
	}
}
