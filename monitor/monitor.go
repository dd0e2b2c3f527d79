// Package monitor shows every attempt to get past a fence: it reads what
// the fences' log rules write (the kernel log for log.target kernel, an
// NFLOG socket in each fenced namespace for nflog), maps it to the
// container through the hook's records, prints one JSON event per attempt,
// and counts them as Prometheus metrics. It also reports a fence's rules
// and counters (status).
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/euank/go-kmsg-parser/kmsgparser"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Where an event was read.
const (
	sourceKernel = "kernel"
	sourceNflog  = "nflog"
)

// Defaults of Options.
const (
	DefaultResync = 10 * time.Second
	DefaultForget = 5 * time.Minute
	// nflogDrain is how long a socket of a fence that is gone still reads
	// what the kernel queued before its rules went.
	nflogDrain = 200 * time.Millisecond
	// unknownContainer labels the attempts of kernel log lines whose fence
	// the monitor does not know: their prefixes may be anyone's (a late
	// line, or a container with CAP_NET_ADMIN writing LOG rules of its own),
	// and a label each would let them grow the metrics without bound.
	unknownContainer = "unknown"
)

// Options configure a Monitor.
type Options struct {
	Config *config.Config
	Out    io.Writer // events, one JSON line each
	Log    logrus.FieldLogger
	// Registry gets the metrics; nil makes a new one (see Monitor.Registry).
	Registry *prometheus.Registry
	// Resync is how often the whole state directory is read again, on top
	// of inotify: it repairs missed notifications and lets go of sockets in
	// namespaces whose containers died without a poststop.
	Resync time.Duration
	// Forget is how long a fence whose record is gone is remembered: kernel
	// log lines read late still find their container, and its series stay
	// for Prometheus to scrape a last time.
	Forget time.Duration
	// OpenKmsg opens the kernel log; nil means kmsgparser.NewParser.
	OpenKmsg func() (kmsgparser.Parser, error)
}

// fence is one record as the monitor knows it. It is never changed once
// made: a changed record makes a new fence, so readers need no lock.
type fence struct {
	key    string
	rec    *records.Record
	prefix string    // what its log rules write first
	gone   time.Time // when its record vanished (or was replaced); zero while live
	// unreachable: no path leads to the namespace any more (its containers
	// died without a poststop); no socket is opened for it.
	unreachable bool
}

func (f *fence) target() string { return f.rec.Policy.Log.Target }
func (f *fence) logs() bool     { return f.rec.Features.Log }

// Monitor follows the fences of one state directory.
type Monitor struct {
	opts     Options
	store    *records.Store
	metrics  *metrics
	registry *prometheus.Registry

	outMu sync.Mutex
	enc   *json.Encoder

	mu     sync.Mutex
	fences map[string]*fence // live fences, by namespace key
	// gone are fences whose record went (or was replaced), kept for Forget.
	// A namespace's key can come back with a new namespace (inode numbers
	// are reused), so they are not kept by key.
	gone []*fence
	// byPrefix has the live and gone fences by log prefix, for kernel log
	// lines. Containers whose ids are alike in their first 12 characters
	// share a prefix.
	byPrefix map[string][]*fence
	// sockets are the NFLOG sockets of live fences, by namespace key;
	// draining those of fences that went, reading what is queued before
	// they close. Only Run's goroutine adds to them.
	sockets  map[string]*nflogSocket
	draining []*nflogSocket
	kernel   context.CancelFunc // stops the kernel log reader; nil until started
	// kernelErr is why the kernel log could not be opened for a fence; it
	// is said once, not at every resync.
	kernelErr error
	readers   sync.WaitGroup // the kernel log reader and the socket readers
}

// New checks the state directory and prepares a Monitor; Run starts it.
func New(o Options) (*Monitor, error) {
	store, err := records.Open(o.Config.StateDir)
	if err != nil {
		return nil, err
	}
	return newMonitor(o, store), nil
}

func newMonitor(o Options, store *records.Store) *Monitor {
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Forget <= 0 {
		o.Forget = DefaultForget
	}
	if o.OpenKmsg == nil {
		o.OpenKmsg = kmsgparser.NewParser
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	enc := json.NewEncoder(o.Out)
	enc.SetEscapeHTML(false)
	m := &Monitor{
		opts:     o,
		store:    store,
		metrics:  newMetrics(o.Registry),
		registry: o.Registry,
		enc:      enc,
		fences:   map[string]*fence{},
		byPrefix: map[string][]*fence{},
		sockets:  map[string]*nflogSocket{},
	}
	o.Registry.MustRegister(fenceGauges{m})
	return m
}

// Registry holds the monitor's metrics, the Go runtime's and the process's.
func (m *Monitor) Registry() *prometheus.Registry { return m.registry }

// Run follows the state directory until ctx ends. With log.target kernel
// in the config it reads the kernel log from the start; otherwise from the
// first fence whose rules log there. It calls ready (if not nil) once it
// follows the fences that exist: attempts from then on are seen.
func (m *Monitor) Run(ctx context.Context, ready func()) error {
	// First, so that whatever has started stops on every way out.
	defer m.shutdown()
	if m.opts.Config.Log.Target == config.LogKernel {
		if err := m.startKernel(ctx); err != nil {
			return err
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the state directory: %w", err)
	}
	defer w.Close()
	if err := w.Add(m.store.Dir); err != nil {
		return fmt.Errorf("watching the state directory %s: %w", m.store.Dir, err)
	}
	m.resync(ctx)
	if ready != nil {
		ready()
	}
	tick := time.NewTicker(m.opts.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if key, ok := records.Key(ev.Name); ok {
				m.take(ctx, key)
			}
		case err := <-w.Errors:
			// An overflow loses notifications: read everything again.
			m.opts.Log.WithError(err).Warn("watching the state directory; reading all records again")
			m.resync(ctx)
		case <-tick.C:
			m.resync(ctx)
		}
	}
}

func (m *Monitor) shutdown() {
	m.mu.Lock()
	for key, s := range m.sockets {
		s.stop(0)
		delete(m.sockets, key)
	}
	for _, s := range m.draining {
		s.stop(0)
	}
	if m.kernel != nil {
		m.kernel()
	}
	m.mu.Unlock()
	m.readers.Wait()
}

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
	if v, err := os.ReadFile("/proc/sys/net/netfilter/nf_log_all_netns"); err == nil && strings.TrimSpace(string(v)) == "0" {
		m.opts.Log.Warn("net.netfilter.nf_log_all_netns is 0: the kernel drops the LOG lines of container namespaces and the monitor sees nothing; set it to 1 (sysctl -w net.netfilter.nf_log_all_netns=1) or use log.target: nflog")
	}
	kctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.kernel = cancel
	m.mu.Unlock()
	m.readers.Go(func() { k.run(kctx, p) })
	return nil
}

// resync reads every record again; fences without a record are gone.
func (m *Monitor) resync(ctx context.Context) {
	keys, err := m.store.Keys()
	if err != nil {
		m.opts.Log.WithError(err).Error("listing the state directory")
		return
	}
	present := map[string]bool{}
	for _, k := range keys {
		present[k] = true
		m.take(ctx, k)
	}
	m.mu.Lock()
	var vanished []string
	for k := range m.fences {
		if !present[k] {
			vanished = append(vanished, k)
		}
	}
	m.mu.Unlock()
	for _, k := range vanished {
		m.remove(k)
	}
	m.releaseDead()
	m.expire(time.Now())
}

// take takes in the record of namespace key as it is now: a new fence is
// followed (its socket opened), a changed one replaced, a missing one gone.
func (m *Monitor) take(ctx context.Context, key string) {
	rec, err := m.store.Load(key)
	if err != nil {
		m.opts.Log.WithError(err).WithField("record", key).Warn("reading a record")
		return
	}
	if rec == nil {
		m.remove(key)
		return
	}
	f := &fence{key: key, rec: rec, prefix: rules.LogPrefix(rec.Policy.Log.Prefix, rec.LogID)}
	log := m.opts.Log.WithFields(logrus.Fields{"container": rec.LogID, "netns": rec.Netns.String()})
	m.mu.Lock()
	old := m.fences[key]
	switch {
	case old != nil && old.rec.Digest == rec.Digest && old.rec.LogID == rec.LogID && old.rec.Backend == rec.Backend:
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
	m.fences[key] = f
	if old == nil || old.rec.LogID != rec.LogID {
		m.warnAlike(f)
	}

	// The NFLOG socket: kept, revived from its drain (the namespace fenced
	// again at once, as when a pod's only container restarts: a new socket
	// could not bind the group while the old one holds it), or let go.
	needs := f.target() == config.LogNflog && f.logs() && !f.unreachable
	group := rec.Policy.Log.Group
	sock := m.sockets[key]
	if sock != nil && (!needs || sock.group != group || sock.stopped()) {
		m.drain(key)
		sock = nil
	}
	var closing *nflogSocket // a socket of the group that must close before a new one binds it
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
		m.point(sock, f)
	}
	m.mu.Unlock()

	switch {
	case f.target() == config.LogKernel && f.logs() && m.kernelErr == nil:
		if err := m.startKernel(ctx); err != nil {
			m.kernelErr = err
			log.WithError(err).Error("a fence logs to the kernel log, which the monitor cannot read: its attempts are not seen")
		}
	case needs && sock == nil:
		if closing != nil {
			<-closing.done
		}
		m.openSocket(f)
	}
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

// point makes f the fence of socket s; the caller holds mu.
func (m *Monitor) point(s *nflogSocket, f *fence) {
	if s.fence != nil && s.fence.prefix != f.prefix {
		s.old = s.fence
	}
	s.fence = f
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

// openSocket opens the NFLOG socket of f, or marks f unreachable when no
// path leads to its namespace any more.
func (m *Monitor) openSocket(f *fence) {
	log := m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "netns": f.rec.Netns.String()})
	ns, ok := netns.Find(f.rec.Netns, nsHints(f.rec)...)
	if !ok && deniedAny(nsHints(f.rec)) {
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
	conn, err := openNflog(ns, f.rec.Policy.Log.Group)
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

// nsHints are the paths that may reach a record's namespace: those of
// create, then each owner's process.
func nsHints(rec *records.Record) []string {
	hints := append([]string{}, rec.Paths...)
	for _, o := range rec.Owners {
		if o.Pid > 0 {
			hints = append(hints, netns.PidPath(o.Pid))
		}
	}
	return hints
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

// remove marks the fence of key gone: its socket drains and closes, and
// the fence is forgotten after Forget.
func (m *Monitor) remove(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drain(key)
	f := m.fences[key]
	if f == nil {
		return
	}
	m.retire(f)
	delete(m.fences, key)
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
	for _, f := range check {
		if f == nil || anyOwnerAlive(f.rec) {
			continue
		}
		if _, ok := netns.Find(f.rec.Netns, f.rec.Paths...); ok {
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

func anyOwnerAlive(rec *records.Record) bool {
	return slices.ContainsFunc(rec.Owners, func(o records.Owner) bool { return o.Alive(rec.Netns) })
}

// expire forgets fences gone for longer than Forget, and their series.
func (m *Monitor) expire(now time.Time) {
	m.mu.Lock()
	var forget []string
	kept := m.gone[:0]
	for _, g := range m.gone {
		if now.Sub(g.gone) < m.opts.Forget {
			kept = append(kept, g)
			continue
		}
		m.reindex(g, nil)
		forget = append(forget, g.rec.LogID)
	}
	clear(m.gone[len(kept):])
	m.gone = kept
	// The labels still in use: full ids, and the short ids of events of
	// containers whose ids are alike.
	inUse := map[string]bool{}
	for _, f := range m.fences {
		inUse[f.rec.LogID], inUse[rules.ShortID(f.rec.LogID)] = true, true
	}
	for _, g := range m.gone {
		inUse[g.rec.LogID], inUse[rules.ShortID(g.rec.LogID)] = true, true
	}
	m.mu.Unlock()
	for _, id := range forget {
		for _, label := range []string{id, rules.ShortID(id)} {
			if !inUse[label] {
				m.metrics.attempts.DeletePartialMatch(prometheus.Labels{"container": label})
			}
		}
	}
}

// gauges counts, for the metrics, the containers by mode and the
// namespaces by mode and target of the fences the monitor follows, and
// the NFLOG sockets it holds. Fences whose namespace no path reaches any
// more (containers dead without a poststop) are left out.
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
		if f.unreachable {
			continue
		}
		containers[f.rec.Policy.Mode] += len(f.rec.Owners)
		namespaces[[2]string{f.rec.Policy.Mode, f.target()}]++
	}
	return containers, namespaces, len(m.sockets) + len(m.draining)
}

// handleKmsg turns a kernel log line of a fence into an event. Lines of
// other programs are ignored; a line with a stem of ours whose fence is not
// known (any more) still makes an event, with the short id as container.
func (m *Monitor) handleKmsg(msg kmsgparser.Message) {
	text, _, _ := strings.Cut(msg.Message, "\n")
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
	// The time of reading, not the message's: kmsgparser derives that from
	// a boot time known only to the second.
	now := time.Now()
	if len(fs) == 1 {
		m.emit(newEvent(now, lf.Flow, lf.UID, lf.HasUID, fs[0], sourceKernel), fs[0].rec.LogID)
		return
	}
	ev := newEvent(now, lf.Flow, lf.UID, lf.HasUID, nil, sourceKernel)
	ev.Container = short
	if len(fs) == 0 {
		m.emit(ev, unknownContainer)
		return
	}
	// Containers whose ids are alike in their first 12 characters: any of
	// them may have sent it.
	ev.Action = actionFor(fs[0].rec.Policy.Mode)
	for _, f := range fs {
		ev.Owners = append(ev.Owners, f.rec.LogID)
		if actionFor(f.rec.Policy.Mode) != ev.Action {
			ev.Action = ActionUnknown
		}
	}
	m.emit(ev, short)
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
	m.emit(newEvent(now, flow, p.UID, p.HasUID, f, sourceNflog), f.rec.LogID)
}

// emit counts an event under the container label and prints it; counted
// first, so that whoever sees the line finds it in the metrics.
func (m *Monitor) emit(ev Event, container string) {
	m.metrics.attempts.WithLabelValues(container, ev.Proto, ev.Action).Inc()
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
