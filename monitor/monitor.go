// SPDX-License-Identifier: Apache-2.0

// Package monitor shows every attempt to get past a fence: it reads what
// the fences' log rules write (the kernel log for log.target kernel, an
// NFLOG socket in each fenced namespace for nflog), maps it to the
// container through the hook's records, prints one JSON event per attempt,
// and counts them as Prometheus metrics. It also reports a fence that is
// no longer whole, and with Repair puts it back.
package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// Where an event was read.
const (
	sourceKernel = "kernel"
	sourceNflog  = "nflog"
	sourceEBPF   = "ebpf" // the attribution programs (AF_VSOCK sends)
)

// Defaults of Options.
const (
	DefaultResync = 10 * time.Second
	DefaultForget = 5 * time.Minute
	// nflogDrain is how long a socket of a fence that is gone still reads
	// what the kernel queued before its rules went.
	nflogDrain = 200 * time.Millisecond
)

// Options configure a Monitor.
type Options struct {
	Config *config.Config
	// Store is the state directory's store; nil opens one. The command
	// shares it with the prune, so that each record is parsed, and held,
	// once (records.Store.Cached).
	Store *records.Store
	Out   io.Writer // events, one JSON line each
	Log   logrus.FieldLogger
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
	// OpenKmsg opens the kernel log; nil means /dev/kmsg.
	OpenKmsg func() (KernelLog, error)
	// LoggedCount reads a fence's counters by rule name, in its own
	// namespace: its log rules' vouch for its kernel log lines (see
	// credit.go). nil reads them through the backend.
	LoggedCount func(rec *records.Record) (map[string]uint64, error)
	// Repair puts a fence that is not whole back, as a create in its
	// namespace would; without it the monitor only reports it.
	Repair bool
	// NewBackend makes the backend a record names; nil means backend.New.
	NewBackend func(name string) (backend.Backend, error)
	// Prune, when set, is called at every resync to take out the fences
	// left only to stale owners (their processes gone without a poststop),
	// after their grace period: the monitor is the one process that runs
	// all along. The command wires it to the hook's RemoveAbandonedFences.
	Prune func(now time.Time)
	// Attribution loads the eBPF programs that name the process of each
	// attempt (see package attrib); LoadAttribution, when set, loads them
	// in place of attrib.Load.
	Attribution     bool
	LoadAttribution func() (Attributor, error)
}

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
	// notWhole has the live fences found not whole at the last check, by
	// namespace key, with what is wrong.
	notWhole map[string]string
	// gens spares checkWhole the fences whose rules did not change.
	gens generations
	// attr names the process of each attempt; nil when attribution is off.
	attr Attributor
	// stopVsock stops the reader of AF_VSOCK sends; nil when none runs.
	stopVsock context.CancelFunc
	// recent are each fence's last attempts, for status (see recent.go).
	recent *recentAttempts
}

// New checks the state directory and prepares a Monitor; Run starts it.
func New(o Options) (*Monitor, error) {
	store := o.Store
	if store == nil {
		var err error
		if store, err = records.Open(o.Config.StateDir); err != nil {
			return nil, err
		}
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
		o.OpenKmsg = openKernelLog
	}
	if o.NewBackend == nil {
		o.NewBackend = backend.New
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
		recent:   newRecentAttempts(),
	}
	if m.opts.LoggedCount == nil {
		m.opts.LoggedCount = m.readLogged
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
	m.startAttribution()
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
				m.follow(ctx, key)
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
	m.gens.keepOnly(nil)
	if m.kernel != nil {
		m.kernel()
	}
	m.mu.Unlock()
	if m.stopVsock != nil {
		m.stopVsock()
	}
	m.readers.Wait()
	if m.attr != nil {
		m.attr.Close()
	}
}

// resync reads every record again; fences without a record are gone.
func (m *Monitor) resync(ctx context.Context) {
	defer func(start time.Time) { m.metrics.resync.Observe(time.Since(start).Seconds()) }(time.Now())
	keys, err := m.store.Keys()
	if err != nil {
		m.opts.Log.WithError(err).Error("listing the state directory")
		return
	}
	present := map[string]bool{}
	for _, k := range keys {
		present[k] = true
		m.follow(ctx, k)
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
		m.markGone(k)
	}
	if m.opts.Prune != nil {
		m.opts.Prune(time.Now())
	}
	m.releaseDead()
	m.checkWhole(time.Now())
	m.expire(time.Now())
	m.forgetRecent()
}
