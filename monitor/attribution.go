// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/monitor/attrib"
)

// How long an event waits for the kernel to file its attempt: the log
// record is written before the fence drops the packet, and the monitor
// may read it in between.
const (
	attribWait  = 20 * time.Millisecond
	attribRetry = 2 * time.Millisecond
)

// startAttribution loads the eBPF programs that name the process of each
// attempt. Without them (no BTF, no privilege, a hook the kernel refuses)
// the monitor says so once and its events carry the rest.
func (m *Monitor) startAttribution() {
	if !m.opts.Attribution {
		return
	}
	load := m.opts.LoadAttribution
	if load == nil {
		load = func() (Attributor, error) { return attrib.Load("") }
	}
	a, err := load()
	if err != nil {
		m.opts.Log.WithError(err).Warn("events do not name the process that tried: the eBPF attribution could not start")
		return
	}
	if t, ok := a.(*attrib.Tracer); ok {
		for _, miss := range t.Missing {
			m.opts.Log.WithField("missing", miss).Warn("attribution works in part")
		}
	}
	m.attr = a
	m.opts.Log.Info("attribution on: events name the process that tried")
	if v, ok := a.(vsockWatcher); ok && v.WatchesVsock() {
		ctx, cancel := context.WithCancel(context.Background())
		m.stopVsock = cancel
		m.readers.Go(func() {
			if err := v.ReadVsock(ctx, m.handleVsock); err != nil {
				m.metrics.errors.WithLabelValues("ebpf").Inc()
				m.opts.Log.WithError(err).Error("reading the AF_VSOCK sends; no more are reported")
			}
		})
	}
}

// vsockWatcher reports the AF_VSOCK sends of fenced namespaces:
// attrib.Tracer where the kernel lets it.
type vsockWatcher interface {
	WatchesVsock() bool
	ReadVsock(ctx context.Context, fn func(attrib.VsockSend)) error
}

// handleVsock makes an event of an AF_VSOCK send of a fenced namespace:
// the fence never sees it, so it is the one report there is.
func (m *Monitor) handleVsock(v attrib.VsockSend) {
	m.mu.Lock()
	var f *fence
	for _, c := range m.fences {
		if c.netnsCookie == v.Netns {
			f = c
		}
	}
	m.mu.Unlock()
	if f == nil {
		return
	}
	ev := newEvent(time.Now(), Flow{Proto: "vsock"}, v.Process.UID, true, f, sourceEBPF)
	cid := v.CID
	ev.VsockCID, ev.VsockPort = &cid, v.Port
	ev.Action = ActionBypassed
	ev.Hint = vsockHint
	ev.setProcess(v.Process)
	m.emit(ev, labelsOf(f.rec))
}

const vsockHint = "AF_VSOCK goes past the network namespace and its fence, to the host or a VM, and cannot be refused by netfilter: give the container a seccomp profile that refuses socket(AF_VSOCK) (Docker's and containerd's default profiles do)"

// Attributor is what the monitor asks of attribution: attrib.Tracer.
type Attributor interface {
	Fence(cookie uint64) error
	Unfence(cookie uint64) error
	Lookup(f attrib.Flow) (attrib.Process, bool)
	Close() error
}

// cookieOf gives the namespace of f to the attribution programs: its
// cookie, or of the fence followed so far in the same namespace; 0 when
// attribution is off or the namespace cannot be reached, and failed when
// that was said already.
func (m *Monitor) cookieOf(f *fence, old *fence, log *logrus.Entry) (cookie uint64, failed bool) {
	if m.attr == nil {
		return 0, false
	}
	// The same namespace only by its file handle: the record's key is the
	// namespace's number, which the kernel gives to the next namespace made
	// once it is freed. A container whose create took over a gone one's
	// record would otherwise keep the gone namespace's cookie, and its
	// attempts would name no process (its vsock sends, no event at all).
	// Without handles (a kernel before 6.18), the cookie is read again.
	if old != nil && sameNamespace(old.rec, f.rec) && (old.netnsCookie != 0 || old.cookieFailed) {
		return old.netnsCookie, old.cookieFailed
	}
	ns, closeNs, ok := netns.OpenKnown(f.rec.Netns, f.rec.NsHandle, f.rec.Hints())
	if !ok {
		return 0, false
	}
	defer closeNs()
	c, err := attrib.NetnsCookie(ns.Path)
	if err == nil {
		err = m.attr.Fence(c)
	}
	if err != nil {
		log.WithError(err).Warn("the attribution programs cannot follow this fence's namespace: its events do not name the process")
		return 0, true
	}
	return c, false
}

// sameNamespace says whether two records name one namespace for sure: the
// same number and the same file handle.
func sameNamespace(a, b *records.Record) bool {
	return a.Netns == b.Netns && a.NsHandle != "" && a.NsHandle == b.NsHandle
}

// unfence stops the programs looking at the namespace of a fence gone.
func (m *Monitor) unfence(f *fence) {
	if m.attr == nil || f == nil || f.netnsCookie == 0 {
		return
	}
	if err := m.attr.Unfence(f.netnsCookie); err != nil {
		m.opts.Log.WithError(err).WithField("container", f.rec.LogID).Warn("taking a namespace out of the attribution map")
	}
}

// attributed names in ev the process that sent the packet of flow, as the
// kernel filed it under fence f's namespace: when the fence dropped it, or
// for TCP as its SYN left (audit mode drops nothing).
func (m *Monitor) attributed(ev Event, f *fence, flow Flow) Event {
	if m.attr == nil || f == nil || f.netnsCookie == 0 {
		return ev
	}
	proto, ok := protoNumbers[flow.Proto]
	if !ok {
		n, err := strconv.ParseUint(flow.Proto, 10, 8)
		if err != nil {
			return ev
		}
		proto = uint8(n)
	}
	key := attrib.Flow{Netns: f.netnsCookie, Proto: proto, Src: flow.Src, Dst: flow.Dst, Sport: flow.Sport, Dport: flow.Dport}
	for deadline := time.Now().Add(attribWait); ; time.Sleep(attribRetry) {
		if p, ok := m.attr.Lookup(key); ok {
			ev.setProcess(p)
			return ev
		}
		if time.Now().After(deadline) {
			return ev
		}
	}
}

// setProcess fills the process fields of ev.
func (ev *Event) setProcess(p attrib.Process) {
	pid := p.Pid
	ev.Pid = &pid
	ev.PidInContainer = p.PidInContainer
	ev.Comm, ev.Exe = p.Comm, p.Exe
	ev.Ppid, ev.ParentComm = p.Ppid, p.ParentComm
}

// protoNumbers are the protocol numbers of the names ProtoName gives.
var protoNumbers = func() map[string]uint8 {
	m := map[string]uint8{}
	for n, name := range protoNames {
		m[name] = uint8(n)
	}
	return m
}()
