// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// A kernel log line is the fence's only as far as the fence's own log
// rule for its protocol has counted packets the monitor has not yet taken
// lines for: lines beyond that (a LOG rule in another namespace with the
// fence's prefix) are dropped and counted, and a forged line of one
// protocol never takes the credit of another.
func TestKernelLinesNeedTheFencesCounters(t *testing.T) {
	counters := &fakeCounters{n: map[string]uint64{"log-tcp": 7, "log-udp": 3, "log-other": 0}}
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	m.opts.LoggedCount = counters.read
	if err := store.Save(testrecord.New(1001, idA, config.ModeEnforce, config.LogKernel, idA)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.resync(ctx) // follows A: its counters so far are no credit

	const tcp = "IN= OUT=eth0 SRC=198.51.100.10 DST=203.0.113.7 LEN=60 PROTO=TCP SPT=41000 DPT=443 SYN URGP=0 UID=1000 GID=1000"
	const icmp = "IN= OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1"
	for range 5 {
		m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcp)) // forged: nothing counted since
	}
	if n := len(out.events(t)); n != 0 {
		t.Fatalf("%d events of lines the fence's counters never counted", n)
	}
	counters.add("log-tcp", 2) // two real attempts logged
	for range 3 {
		m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", icmp)) // forged ICMP: not the TCP rule's credit
	}
	for range 3 {
		m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcp))
	}
	evs := out.events(t)
	if len(evs) != 2 || evs[0].Proto != "tcp" || evs[1].Proto != "tcp" {
		t.Errorf("events %+v; want the two TCP lines the counters vouch for", evs)
	}
	if n := testutil.ToFloat64(m.metrics.unverified); n != 5+3+1 {
		t.Errorf("unverified lines: %v, want 9", n)
	}
}

// A line written to /dev/kmsg (a writer in a container that was given the
// device, or any process allowed to write it) has a user space facility:
// it takes none of the credit that the fence's counters give its real
// lines.
func TestKernelLinesFromUserSpaceTakeNoCredit(t *testing.T) {
	counters := &fakeCounters{n: map[string]uint64{"log-tcp": 0, "log-udp": 0, "log-other": 0}}
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	m.opts.LoggedCount = counters.read
	if err := store.Save(testrecord.New(1001, idA, config.ModeEnforce, config.LogKernel, idA)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.resync(ctx)
	counters.add("log-tcp", 2) // two real attempts, whose lines are on their way

	const tcp = "IN= OUT=eth0 SRC=198.51.100.10 DST=203.0.113.7 LEN=60 PROTO=TCP SPT=41000 DPT=443 SYN URGP=0 UID=1000 GID=1000"
	const user = 1 << 3 // LOG_USER, which the kernel gives lines written to /dev/kmsg
	for range 2 {
		rec := kline("bypass:aaaaaaaaaaaa: ", strings.Replace(tcp, "203.0.113.7", "192.0.2.66", 1))
		rec.Priority = user | 4
		m.handleKmsg(rec)
	}
	for range 2 {
		rec := kline("bypass:aaaaaaaaaaaa: ", tcp)
		rec.Priority = 4 // KERN_WARNING, facility kern: netfilter's
		m.handleKmsg(rec)
	}
	evs := out.events(t)
	if len(evs) != 2 || evs[0].Dst != "203.0.113.7" || evs[1].Dst != "203.0.113.7" {
		t.Errorf("events %+v; want the two kernel lines, not the two written to /dev/kmsg", evs)
	}
	if n := testutil.ToFloat64(m.metrics.unverified); n != 2 {
		t.Errorf("unverified lines: %v, want 2", n)
	}
}

// A fence is counted as followed (bypass_hook_fenced_namespaces, which
// the churn test waits for before its attempts) only once its counters
// were read: an attempt counted between the two would be taken for one
// made before the monitor came, and its line dropped as unverified.
func TestKernelFenceShownOnlyOncePrimed(t *testing.T) {
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	counters := &fakeCounters{n: map[string]uint64{"log-tcp": 4, "log-udp": 0, "log-other": 0}}
	reading, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	m.opts.LoggedCount = func(rec *records.Record) (map[string]uint64, error) {
		once.Do(func() { close(reading); <-release })
		return counters.read(rec)
	}
	if err := store.Save(testrecord.New(1001, idA, config.ModeEnforce, config.LogKernel, idA)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan struct{})
	go func() { m.resync(ctx); close(followed) }()
	<-reading
	if n := gauge(t, m, "bypass_hook_fenced_namespaces", nil); n != 0 {
		t.Errorf("bypass_hook_fenced_namespaces = %v while the fence's counters are being read, want 0", n)
	}
	close(release)
	<-followed
	if n := gauge(t, m, "bypass_hook_fenced_namespaces", nil); n != 1 {
		t.Fatalf("bypass_hook_fenced_namespaces = %v once followed, want 1", n)
	}
	counters.add("log-tcp", 1) // an attempt made once the fence is shown
	const tcp = "IN= OUT=eth0 SRC=198.51.100.10 DST=203.0.113.7 LEN=60 PROTO=TCP SPT=41000 DPT=443 SYN URGP=0 UID=1000 GID=1000"
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcp))
	if evs := out.events(t); len(evs) != 1 {
		t.Errorf("events %+v; want the attempt's", evs)
	}
}

// A create saves its record twice: marked incomplete before its rules go
// in (with neither their names nor their features), then whole. Until the
// monitor follows the whole one it cannot read the rules' counters, so the
// namespace is not shown as fenced (bypass_hook_fenced_namespaces) in
// between: an attempt made then, by a client that waits for the gauge as
// the churn test does, would be counted before the credit is primed and
// its line dropped as unverified. The churn lost one so under `make bench`,
// the monitor reading iptables counters slowly at load 8-13: it had
// followed every intent, and not yet every whole record.
func TestKernelFenceNotShownWhileInstalled(t *testing.T) {
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	counters := &fakeCounters{n: map[string]uint64{"log-tcp": 0, "log-udp": 0, "log-other": 0}}
	m.opts.LoggedCount = counters.read
	intent := testrecord.New(1001, idA, config.ModeEnforce, config.LogKernel, idA)
	intent.Features, intent.RuleNames, intent.Incomplete = rules.Features{}, nil, records.IncompleteInstall
	whole := testrecord.New(1001, idA, config.ModeEnforce, config.LogKernel, idA)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attempted := false
	for _, rec := range []*records.Record{intent, whole} {
		if err := store.Save(rec); err != nil {
			t.Fatal(err)
		}
		m.resync(ctx)
		shown := gauge(t, m, "bypass_hook_fenced_namespaces", nil)
		if rec == intent && shown != 0 {
			t.Errorf("bypass_hook_fenced_namespaces = %v while the record is incomplete, want 0", shown)
		}
		if shown == 1 && !attempted {
			counters.add("log-tcp", 1) // the attempt, made once the fence is shown
			attempted = true
		}
	}
	if !attempted {
		t.Fatal("the fence was never shown")
	}
	const tcp = "IN= OUT=eth0 SRC=198.51.100.10 DST=203.0.113.7 LEN=60 PROTO=TCP SPT=41000 DPT=443 SYN URGP=0 UID=1000 GID=1000"
	m.handleKmsg(kline("bypass:aaaaaaaaaaaa: ", tcp))
	if evs := out.events(t); len(evs) != 1 {
		t.Errorf("events %+v; want the attempt's", evs)
	}
}

// fakeCounters stands in for a fence's log rules' counters, by rule name,
// as a test makes them grow.
type fakeCounters struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (c *fakeCounters) read(*records.Record) (map[string]uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return clone(c.n), nil
}

func (c *fakeCounters) add(rule string, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[rule] += n
}
