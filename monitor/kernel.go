// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/internal/kmsg"
)

// startKernel starts reading the kernel log, once.
func (m *Monitor) startKernel(ctx context.Context) error {
	if m.kernel != nil {
		return nil
	}
	k := &kernelSource{
		open:   m.opts.OpenKmsg,
		handle: m.handleKmsg,
		lost:   func(n int) { m.metrics.lost.WithLabelValues(sourceKernel).Add(float64(n)) },
		log:    m.opts.Log.WithField("source", sourceKernel),
	}
	p, err := k.start()
	if err != nil {
		return fmt.Errorf("reading the kernel log /dev/kmsg for log.target kernel: %w (the monitor needs CAP_SYSLOG, which root has unless it was dropped; or use log.target: nflog)", err)
	}
	if backend.KernelLogHidesNamespaces() {
		m.opts.Log.Warn("net.netfilter.nf_log_all_netns is 0: the kernel drops the LOG lines of container namespaces and the monitor sees nothing; set it to 1 (sysctl -w net.netfilter.nf_log_all_netns=1) or use log.target: nflog")
	}
	kctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.kernel = cancel
	m.mu.Unlock()
	m.readers.Go(func() { k.run(kctx, p) })
	return nil
}

// handleKmsg turns a kernel log line of a fence into an event. Lines of
// other programs are ignored. A line with a prefix of ours makes an event
// only where a fence's own counters vouch for it (see credit.go): a line
// from another namespace, forged with a fence's prefix, is dropped and
// counted, and so is one whose fence is not known (any more).
func (m *Monitor) handleKmsg(rec kmsg.Record) {
	text := rec.Message
	i := strings.Index(text, ": ")
	if i < 0 {
		return
	}
	prefix, rest := text[:i+2], text[i+2:]
	stem, short, ok := strings.Cut(strings.TrimSuffix(prefix, ": "), ":")
	if !ok || !strings.Contains(rest, "SRC=") {
		return
	}
	m.mu.Lock()
	fs := m.kernelFences(prefix)
	m.mu.Unlock()
	if len(fs) == 0 && stem != m.opts.Config.Log.Prefix {
		return
	}
	lf, err := ParseLogLine(rest)
	if err != nil {
		m.metrics.errors.WithLabelValues("parse").Inc()
		m.opts.Log.WithError(err).WithField("line", text).Warn("a kernel log line of a fence that cannot be read")
		return
	}
	// Containers whose ids are alike in their first 12 characters share a
	// prefix: any of them may have sent it, and the counters of one vouch.
	// A line a process wrote to /dev/kmsg carries a user space facility
	// (the kernel gives it LOG_USER when the writer names none): it is no
	// netfilter line, whatever it says, and takes no credit.
	vouched := rec.Priority>>3 == 0 && slices.ContainsFunc(fs, func(f *fence) bool { return m.vouch(f, lf.Proto) })
	if !vouched {
		m.unverified(fs, prefix)
		return
	}
	// The time of reading, not the message's, which counts from boot.
	now := time.Now()
	if len(fs) == 1 {
		m.emit(m.attributed(newEvent(now, lf.Flow, lf.UID, lf.HasUID, fs[0], sourceKernel), fs[0], lf.Flow), labelsOf(fs[0].rec))
		return
	}
	ev := newEvent(now, lf.Flow, lf.UID, lf.HasUID, nil, sourceKernel)
	ev.Container = short
	ev.Action = actionFor(fs[0].rec.Policy.Mode)
	for _, f := range fs {
		ev.Owners = append(ev.Owners, f.rec.LogID)
		if actionFor(f.rec.Policy.Mode) != ev.Action {
			ev.Action = ActionUnknown
		}
	}
	m.emit(ev, seriesLabels{container: short})
}

// kernelFences returns the fences whose rules may have written a kernel log
// line with prefix: the live ones (more than one when their containers' ids
// are alike in the first 12 characters), or else the one gone last. The
// caller holds mu.
func (m *Monitor) kernelFences(prefix string) []*fence {
	var live []*fence
	var last *fence
	for _, f := range m.byPrefix[prefix] {
		switch {
		case f.target() != config.LogKernel || !f.logs():
		case f.gone.IsZero():
			if !slices.ContainsFunc(live, func(l *fence) bool { return l.rec.LogID == f.rec.LogID }) {
				live = append(live, f)
			}
		case last == nil || f.gone.After(last.gone):
			last = f
		}
	}
	if len(live) == 0 && last != nil {
		return []*fence{last}
	}
	return live
}
