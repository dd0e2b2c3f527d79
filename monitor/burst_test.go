// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"errors"
	"fmt"
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// TestMonitorBurst: 1,000 direct connections in one second. All are
// refused; the log rule writes no more than log.rate and log.burst allow
// (5/second, burst 10: the defaults), in the kernel log too for the kernel
// target; and the monitor prints every record the log rule wrote, within
// 2s, losing none.
func TestMonitorBurst(t *testing.T) {
	testnet.RequireRoot(t)
	for _, target := range []string{config.LogKernel, config.LogNflog} {
		t.Run(target, func(t *testing.T) { burst(t, target) })
	}
}

func burst(t *testing.T, target string) {
	const (
		attempts = 1000
		rate     = 5 // log.rate and log.burst: the defaults
		burstLen = 10
	)
	prepareTarget(t, target)
	stem := testnet.RandName("b")
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: %s, prefix: %s}\n", proxyAddr, target, stem))
	mon := startMonitor(t, cfgPath)
	// For nflog too: its records must stay out of the kernel log.
	kmsg := testnet.OpenKmsg(t)
	s := newSleeper(t, cfgPath)
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
	if target == config.LogNflog {
		mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	}

	start := time.Now()
	err := netns.In(s.nsPath, func() error {
		for i := range attempts {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / attempts)); d > 0 {
				time.Sleep(d)
			}
			c, err := net.DialTimeout("tcp4", refusedAddr, time.Second)
			if err == nil {
				c.Close()
				return fmt.Errorf("connection %d was let through", i)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("connection %d: %v, want ECONNREFUSED", i, err)
			}
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}

	st := runStatus(t, cfgPath, s.id)
	if st.Totals == nil {
		t.Fatalf("status has no counters: %s", st.Error)
	}
	logged := int(st.Totals.Logged)
	// The limit match starts with burst credits and earns rate a second.
	maxLogged := burstLen + int(math.Ceil(rate*elapsed.Seconds()))
	if st.Totals.RefusedTCP != attempts {
		t.Errorf("refused %d, want all %d", st.Totals.RefusedTCP, attempts)
	}
	if logged < burstLen || logged > maxLogged {
		t.Errorf("the log rule wrote %d records for %d attempts in %s; the limit allows %d to %d", logged, attempts, elapsed, burstLen, maxLogged)
	}
	mon.waitEvents(s.id, logged, eventWait)
	time.Sleep(300 * time.Millisecond) // anything beyond the log rule's records would show now
	evs := mon.eventsOf(s.id)
	if len(evs) != logged {
		t.Errorf("the monitor printed %d events, the log rule wrote %d records", len(evs), logged)
	}
	last := mon.lastArrival(s.id).Sub(start.Add(elapsed))
	if last > eventWait {
		t.Errorf("the last event came %s after the burst, more than %s", last, eventWait)
	}
	lines := 0
	prefix := rules.LogPrefix(stem, s.id)
	for {
		if _, err := kmsg.Wait(500*time.Millisecond, prefix); err != nil {
			break
		}
		lines++
	}
	wantLines := logged
	if target == config.LogNflog {
		wantLines = 0
	}
	if lines != wantLines {
		t.Errorf("%d kernel log lines with %q, want %d", lines, prefix, wantLines)
	}
	fams := mon.scrape(t)
	if lost := metric(fams, "bypass_hook_events_lost_total", map[string]string{"source": target}); lost != 0 {
		t.Errorf("the monitor lost %v records", lost)
	}
	if n := metric(fams, "bypass_hook_attempts_total", map[string]string{"container": s.id}); int(n) != logged {
		t.Errorf("bypass_hook_attempts_total of %s: %v, want %d", s.id, n, logged)
	}
	t.Logf("%s: %d attempts in %s, all refused; the log rule wrote %d (limit %d/second, burst %d: at most %d); kernel log lines %d; events %d, the last read %s",
		target, attempts, elapsed.Round(time.Millisecond), logged, rate, burstLen, maxLogged, lines, len(evs), relative(last, "the burst ended"))
}

func relative(d time.Duration, what string) string {
	if d < 0 {
		return ms(-d) + " before " + what
	}
	return ms(d) + " after " + what
}
