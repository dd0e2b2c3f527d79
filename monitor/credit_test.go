// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// A kernel log line is the fence's only as far as the fence's own log
// rule for its protocol has counted packets the monitor has not yet taken
// lines for: lines beyond that (a LOG rule in another namespace with the
// fence's prefix) are dropped and counted, and a forged line of one
// protocol never takes the credit of another.
func TestKernelLinesNeedTheFencesCounters(t *testing.T) {
	var mu sync.Mutex
	counters := map[string]uint64{"log-tcp": 7, "log-udp": 3, "log-other": 0}
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	m.opts.LoggedCount = func(*records.Record) (map[string]uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return clone(counters), nil
	}
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
	mu.Lock()
	counters["log-tcp"] += 2 // two real attempts logged
	mu.Unlock()
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
