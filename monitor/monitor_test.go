// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/kmsg"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// These run the monitor on a state directory of made-up records, without
// root: kernel log lines are handed in, no namespace is entered.

// syncBuffer is an io.Writer safe for the monitor's readers and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) events(t *testing.T) []Event {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []Event
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func testConfig(t *testing.T, target string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("proxies: [198.51.100.1:3128]\nlog: {target: " + target + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newTestMonitor(t *testing.T, target string, kmsg *fakeKmsg) (*Monitor, *records.Store, *syncBuffer) {
	t.Helper()
	store := &records.Store{Dir: t.TempDir()}
	out := &syncBuffer{}
	logger, _ := test.NewNullLogger()
	m := newMonitor(Options{
		Config:   testConfig(t, target),
		Out:      out,
		Log:      logger,
		Resync:   time.Hour, // only inotify, unless a test calls resync
		Forget:   time.Minute,
		OpenKmsg: func() (KernelLog, error) { return kmsg, nil },
		// Every reading of a fence's counters shows more logged: each line
		// handed in is vouched for (TestMonitorForgedKernelLines has none).
		LoggedCount: growingCount(),
	}, store)
	return m, store, out
}

const (
	idA = "aaaaaaaaaaaa0123456789"
	idB = "bbbbbbbbbbbb0123456789"
)

func kline(prefix, rest string) kmsg.Record {
	return kmsg.Record{Message: prefix + rest}
}

// growingCount stands in for a fence's log counters that grow by 1000
// between two readings.
func growingCount() func(*records.Record) (map[string]uint64, error) {
	var mu sync.Mutex
	n := uint64(0)
	return func(*records.Record) (map[string]uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		n += 1000
		return map[string]uint64{"log-tcp": n, "log-udp": n, "log-other": n}, nil
	}
}

// gauge reads a gauge of the monitor as a scrape would, summing the series
// whose labels include labels; -1 when it has no such series.
func gauge(t *testing.T, m *Monitor, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
	series:
		for _, s := range fam.Metric {
			have := map[string]string{}
			for _, lp := range s.Label {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			sum, found = sum+s.GetGauge().GetValue(), true
		}
	}
	if !found {
		return -1
	}
	return sum
}

func enforce() map[string]string { return map[string]string{"mode": config.ModeEnforce} }
func audit() map[string]string   { return map[string]string{"mode": config.ModeAudit} }

// series lists the container labels of bypass_hook_attempts_total.
func series(t *testing.T, m *Monitor) []string {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fam := range fams {
		if fam.GetName() != "bypass_hook_attempts_total" {
			continue
		}
		for _, s := range fam.Metric {
			for _, lp := range s.Label {
				if lp.GetName() == "container" {
					out = append(out, lp.GetValue())
				}
			}
		}
	}
	return out
}

func TestMonitorKernelLines(t *testing.T) {
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, r := range []*records.Record{
		testrecord.New(1001, idA, config.ModeEnforce, config.LogKernel, idA),
		testrecord.New(1002, idB, config.ModeAudit, config.LogKernel, idB, "sidecar-of-b"),
	} {
		if err := store.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	m.resync(ctx)

	const tcpLine = "IN= OUT=eth0 SRC=198.51.100.10 DST=203.0.113.7 LEN=60 PROTO=TCP SPT=41000 DPT=443 SYN URGP=0 UID=1000 GID=1000"
	const udpLine = "IN= OUT=eth0 SRC=198.51.100.10 DST=203.0.113.53 LEN=40 PROTO=UDP SPT=5000 DPT=53 LEN=20 UID=0 GID=0"
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcpLine))
	m.handleKmsg(kline("bypass:bbbbbbbbbbbb: ", udpLine))
	m.handleKmsg(kline("bypass:cccccccccccc: ", tcpLine))                 // our stem, no record
	m.handleKmsg(kline("other:aaaaaaaaaaaa: ", tcpLine))                  // someone else's LOG rule
	m.handleKmsg(kline("usb 1-1: ", "new high-speed USB device"))         // not a LOG line
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", "SRC=x DST=y PROTO=TCP")) // ours, garbled

	evs := out.events(t)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(evs), evs)
	}
	a, b := evs[0], evs[1]
	if a.Container != idA || a.Action != ActionRefused || a.Proto != "tcp" || a.Dst != "203.0.113.7" || a.Dport != 443 ||
		a.Src != "198.51.100.10" || a.Sport != 41000 || a.UID == nil || *a.UID != 1000 || a.Source != sourceKernel || a.Owners != nil {
		t.Errorf("event of A: %+v", a)
	}
	if b.Container != idB || b.Action != ActionAudited || b.Proto != "udp" || b.Dport != 53 || len(b.Owners) != 2 || !strings.Contains(b.Hint, "DNS") {
		t.Errorf("event of B: %+v", b)
	}
	// A line of a fence not known: no fence's counters vouch for it (it
	// may be anyone's, forged in a namespace of its own): dropped and
	// counted, never an event or a series.
	if n := testutil.ToFloat64(m.metrics.unverified); n != 1 {
		t.Errorf("unverified lines: %v, want 1 (the unknown fence's)", n)
	}
	if slices.Contains(series(t, m), "cccccccccccc") {
		t.Errorf("a series labelled with an unknown fence's short id: %v", series(t, m))
	}
	if n := testutil.ToFloat64(m.metrics.attempts.WithLabelValues("", "", idA, "tcp", ActionRefused)); n != 1 {
		t.Errorf("attempts of A: %v", n)
	}
	if n := testutil.ToFloat64(m.metrics.attempts.WithLabelValues("", "", idB, "udp", ActionAudited)); n != 1 {
		t.Errorf("attempts of B: %v", n)
	}
	if n := testutil.ToFloat64(m.metrics.errors.WithLabelValues("parse")); n != 1 {
		t.Errorf("parse errors: %v, want 1", n)
	}
	if e, a := gauge(t, m, "bypass_hook_fenced_containers", enforce()), gauge(t, m, "bypass_hook_fenced_containers", audit()); e != 1 || a != 2 {
		t.Errorf("fenced containers: enforce %v audit %v, want 1 and 2", e, a)
	}

	// A gone, its late lines still find it until Forget has passed.
	if err := store.Delete(testrecord.New(1001, idA, "", "").Netns.Key()); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	if e := gauge(t, m, "bypass_hook_fenced_containers", enforce()); e != 0 {
		t.Errorf("fenced containers in enforce after A left: %v", e)
	}
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcpLine))
	if evs := out.events(t); evs[len(evs)-1].Container != idA {
		t.Errorf("a late line of A: %+v", evs[len(evs)-1])
	}
	m.expire(time.Now().Add(2 * time.Minute))
	before := len(out.events(t))
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcpLine))
	if evs := out.events(t); len(evs) != before || testutil.ToFloat64(m.metrics.unverified) != 2 {
		t.Errorf("a line of A after Forget, which nothing vouches for: events %+v, unverified %v", evs[before:], testutil.ToFloat64(m.metrics.unverified))
	}
	// A's series went with it (the new one is labelled unknown).
	if slices.Contains(series(t, m), idA) {
		t.Errorf("A's series is still there after Forget: %v", series(t, m))
	}
	if n := testutil.ToFloat64(m.metrics.attempts.WithLabelValues("", "", idB, "udp", ActionAudited)); n != 1 {
		t.Errorf("B's series went with A's: %v", n)
	}
}

// The monitor follows records as they come and go through inotify alone
// (Resync is an hour here).
func TestMonitorFollowsStateDir(t *testing.T) {
	kmsg := newFakeKmsg(true)
	m, store, _ := newTestMonitor(t, config.LogKernel, kmsg)
	if err := store.Save(testrecord.New(2001, idA, config.ModeEnforce, config.LogKernel, idA)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- m.Run(ctx, func() { close(ready) }) }()
	<-ready
	if !kmsg.seeked {
		t.Error("the kernel log was not read from its end")
	}
	containers := func() float64 { return gauge(t, m, "bypass_hook_fenced_containers", enforce()) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 2s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the record there at start", func() bool { return containers() == 1 })

	recB := testrecord.New(2002, idB, config.ModeEnforce, config.LogKernel, idB)
	if err := store.Save(recB); err != nil {
		t.Fatal(err)
	}
	waitFor("a new record", func() bool { return containers() == 2 })
	recB.Owners = append(recB.Owners, records.Owner{ID: "second", Pid: -1})
	if err := store.Save(recB); err != nil {
		t.Fatal(err)
	}
	waitFor("a new owner", func() bool { return containers() == 3 })
	if err := store.Delete(recB.Netns.Key()); err != nil {
		t.Fatal(err)
	}
	waitFor("a record removed", func() bool { return containers() == 1 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	select {
	case <-kmsg.closed:
	default:
		t.Error("the kernel log was left open")
	}
}

// A record of log.target nflog whose namespace no path reaches (its
// containers died without a poststop) gets no socket, and no retries.
func TestMonitorNflogUnreachable(t *testing.T) {
	m, store, _ := newTestMonitor(t, config.LogNflog, newFakeKmsg(true))
	rec := testrecord.New(3001, idA, config.ModeEnforce, config.LogNflog, idA)
	rec.Netns = netns.ID{Dev: 1, Ino: 1} // no namespace has this
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.resync(ctx)
	m.mu.Lock()
	f := m.fences[rec.Netns.Key()]
	nsock := len(m.sockets)
	started := m.kernel != nil
	m.mu.Unlock()
	if f == nil || !f.unreachable || nsock != 0 {
		t.Errorf("fence %+v, %d sockets; want it unreachable, no socket", f, nsock)
	}
	// A fence known dead is not counted as fenced.
	if n, c := gauge(t, m, "bypass_hook_fenced_namespaces", nil), gauge(t, m, "bypass_hook_fenced_containers", nil); n != 0 || c != 0 {
		t.Errorf("fenced namespaces %v, containers %v; want 0 and 0 for an unreachable fence", n, c)
	}
	if started {
		t.Error("the kernel log was opened for an nflog-only monitor")
	}
	if n := testutil.ToFloat64(m.metrics.errors.WithLabelValues("nflog")); n != 0 {
		t.Errorf("an unreachable namespace counted as %v errors", n)
	}
}

// A namespace's inode number is reused once it is freed, so a new fence
// can come under the key of one that went: the old one must still be
// forgotten (its series deleted) and the new one followed.
func TestMonitorKeyReused(t *testing.T) {
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	ctx := context.Background()
	old := testrecord.New(4001, idA, config.ModeEnforce, config.LogKernel, idA)
	if err := store.Save(old); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	const line = "SRC=198.51.100.10 DST=203.0.113.7 PROTO=TCP SPT=1 DPT=443 UID=0"
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", line))

	// Between two looks at the directory, A went and B came in its key.
	if err := store.Save(testrecord.New(4001, idB, config.ModeEnforce, config.LogKernel, idB)); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", line)) // late line of A
	m.handleKmsg(kline("bypass:bbbbbbbbbbbb: ", line))
	evs := out.events(t)
	if len(evs) != 3 || evs[1].Container != idA || evs[2].Container != idB {
		t.Fatalf("events %+v; want A, A, B", evs)
	}
	m.expire(time.Now().Add(2 * time.Minute))
	if slices.Contains(series(t, m), idA) {
		t.Errorf("A's series outlived Forget: %v", series(t, m))
	}
	if n := testutil.ToFloat64(m.metrics.attempts.WithLabelValues("", "", idB, "tcp", ActionRefused)); n != 1 {
		t.Errorf("B's series: %v, want 1", n)
	}
	if g := gauge(t, m, "bypass_hook_fenced_containers", enforce()); g != 1 {
		t.Errorf("fenced containers: %v, want 1", g)
	}
}

// Containers whose ids are alike in their first 12 characters (runc ids
// such as myapp-worker-1 and myapp-worker-2) share a kernel log prefix: an
// event of theirs names the 12 characters and lists both, never one of them
// by a guess.
func TestMonitorAlikeIDs(t *testing.T) {
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	logger, logged := test.NewNullLogger()
	m.opts.Log = logger
	ctx := context.Background()
	const one, two, other = "myapp-worker-1", "myapp-worker-2", "myapp-other-1"
	recOne := testrecord.New(5001, one, config.ModeEnforce, config.LogKernel, one)
	recTwo := testrecord.New(5002, two, config.ModeEnforce, config.LogKernel, two)
	for _, r := range []*records.Record{recOne, recTwo, testrecord.New(5003, other, config.ModeEnforce, config.LogKernel, other)} {
		if err := store.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	m.resync(ctx)
	warned := 0
	for _, e := range logged.AllEntries() {
		if strings.Contains(e.Message, "alike in their first 12 characters") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings of ids alike, want 1", warned)
	}

	const line = "SRC=198.51.100.10 DST=203.0.113.7 PROTO=TCP SPT=1 DPT=443 UID=0"
	m.handleKmsg(kline("bypass:myapp-worker: ", line))
	m.handleKmsg(kline("bypass:myapp-other-: ", line))
	evs := out.events(t)
	if len(evs) != 2 {
		t.Fatalf("events %+v, want 2", evs)
	}
	if ev := evs[0]; ev.Container != "myapp-worker" || !slices.Equal(slices.Sorted(slices.Values(ev.Owners)), []string{one, two}) || ev.Action != ActionRefused {
		t.Errorf("event of the alike ids: %+v; want container myapp-worker, owners both, refused", ev)
	}
	if ev := evs[1]; ev.Container != other || ev.Owners != nil {
		t.Errorf("event of a container with a prefix of its own: %+v", ev)
	}
	if n := testutil.ToFloat64(m.metrics.attempts.WithLabelValues("", "", "myapp-worker", "tcp", ActionRefused)); n != 1 {
		t.Errorf("attempts under the shared 12 characters: %v, want 1", n)
	}

	// Modes that differ: the action is not known either.
	recTwo.Policy.Mode, recTwo.Digest = config.ModeAudit, "audit"
	if err := store.Save(recTwo); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	m.handleKmsg(kline("bypass:myapp-worker: ", line))
	if ev := out.events(t)[2]; ev.Container != "myapp-worker" || len(ev.Owners) != 2 || ev.Action != ActionUnknown {
		t.Errorf("event of alike ids in enforce and audit: %+v; want action unknown", ev)
	}

	// One left: its lines are its own again.
	if err := store.Delete(recOne.Netns.Key()); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	m.handleKmsg(kline("bypass:myapp-worker: ", line))
	if ev := out.events(t)[3]; ev.Container != two || ev.Action != ActionAudited || ev.Owners != nil {
		t.Errorf("event after one of the alike left: %+v; want %s, audited", ev, two)
	}

	// Both gone and forgotten: the series under the 12 characters go too.
	if err := store.Delete(recTwo.Netns.Key()); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	m.expire(time.Now().Add(2 * time.Minute))
	if got := series(t, m); slices.Contains(got, "myapp-worker") || slices.Contains(got, two) || !slices.Contains(got, other) {
		t.Errorf("series after the alike were forgotten: %v; want only %s's", got, other)
	}
}

// Run that fails to start stops what it started: the kernel log reader.
func TestMonitorRunFailsClean(t *testing.T) {
	kmsg := newFakeKmsg(true)
	m, store, _ := newTestMonitor(t, config.LogKernel, kmsg)
	store.Dir = filepath.Join(t.TempDir(), "missing")
	if err := m.Run(context.Background(), nil); err == nil {
		t.Fatal("Run on a missing state directory did not fail")
	}
	select {
	case <-kmsg.closed:
	default:
		t.Error("the kernel log was left open after Run failed")
	}
}

// A socket whose namespace got a new fence (replaced, or fenced again while
// it drained) still reads the records of the old one queued before; other
// prefixes in the group are another program's.
func TestHandleNflogPrefixes(t *testing.T) {
	m, _, out := newTestMonitor(t, config.LogNflog, newFakeKmsg(true))
	a, b := testFence(idA, config.ModeEnforce, idA), testFence(idB, config.ModeAudit, idB)
	s := &nflogSocket{}
	m.bindSocket(s, a)
	m.bindSocket(s, b)
	payload := ipv4(protoTCP, "198.51.100.10", "203.0.113.7", 0, 0, l4ports(41000, 443))
	for _, prefix := range []string{b.prefix, a.prefix, "ulogd: "} {
		m.handleNflog(s, nflogPacket{Prefix: prefix, Payload: payload}, time.Now())
	}
	evs := out.events(t)
	if len(evs) != 2 || evs[0].Container != idB || evs[0].Action != ActionAudited || evs[1].Container != idA || evs[1].Action != ActionRefused {
		t.Errorf("events %+v; want B's (audited), then A's (refused)", evs)
	}
}
