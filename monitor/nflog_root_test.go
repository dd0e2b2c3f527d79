// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// These run the monitor in the test process, as root, with NFLOG sockets in
// namespaces the tests make: what happens to a namespace's socket as its
// record changes.

// nflogRecord is a fence of log.target nflog in the namespace at path.
func nflogRecord(t *testing.T, path, id string) *records.Record {
	t.Helper()
	nsID, err := netns.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := testrecord.New(0, id, config.ModeEnforce, config.LogNflog, id)
	rec.Netns, rec.Paths = nsID, []string{path}
	return rec
}

func (m *Monitor) socketOf(key string) *nflogSocket {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sockets[key]
}

// newRootMonitor is a monitor for log.target nflog that is shut down (its
// sockets closed) at the end of the test, before the test's namespaces go.
func newRootMonitor(t *testing.T) (*Monitor, *records.Store, *syncBuffer) {
	m, store, out := newTestMonitor(t, config.LogNflog, newFakeKmsg(true))
	t.Cleanup(m.shutdown)
	return m, store, out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A namespace fenced again while its old socket drains (a pod's only
// container restarts: poststop, then create, in the same namespace) keeps
// a socket: a new one could not bind the group the old one holds.
func TestMonitorNflogRefence(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "iptables")
	ns := testnet.NewNetns(t)
	m, store, out := newRootMonitor(t)
	ctx := context.Background()

	recA := nflogRecord(t, ns.Path, idA)
	key := recA.Netns.Key()
	if err := store.Save(recA); err != nil {
		t.Fatal(err)
	}
	m.follow(ctx, key)
	if m.socketOf(key) == nil {
		t.Fatal("no NFLOG socket for a fence of log.target nflog")
	}
	if err := store.Delete(key); err != nil {
		t.Fatal(err)
	}
	m.follow(ctx, key)
	recB := nflogRecord(t, ns.Path, idB)
	if err := store.Save(recB); err != nil {
		t.Fatal(err)
	}
	m.follow(ctx, key)
	time.Sleep(2 * nflogDrain) // past the old socket's drain
	if s := m.socketOf(key); s == nil || s.stopped() {
		t.Fatalf("no open NFLOG socket after the namespace was fenced again within %v of its fence going (socket %v)", nflogDrain, s)
	}
	if n := testutil.ToFloat64(m.metrics.errors.WithLabelValues("nflog")); n != 0 {
		t.Errorf("%v NFLOG errors, want 0", n)
	}
	if n := gauge(t, m, "bypass_hook_nflog_sockets", nil); n != 1 {
		t.Errorf("bypass_hook_nflog_sockets %v, want 1", n)
	}

	// And it hears the new fence's log rule.
	ns.Exec(t, "ip", "link", "set", "lo", "up")
	ns.Exec(t, "iptables", "-A", "OUTPUT", "-o", "lo", "-p", "udp", "--dport", "9",
		"-j", "NFLOG", "--nflog-group", "7231", "--nflog-prefix", rules.LogPrefix("bypass", idB))
	if err := ns.Do(func() error {
		c, err := net.Dial("udp4", "127.0.0.1:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "an event of the new fence", func() bool { return len(out.events(t)) > 0 })
	if ev := out.events(t)[0]; ev.Container != idB || ev.Proto != "udp" || ev.Dport != 9 || ev.Source != sourceNflog {
		t.Errorf("event %+v; want container %s, udp port 9, from nflog", ev, idB)
	}
}

// A record that no longer asks for NFLOG (a new fence logging to the
// kernel log, or one without log rules) lets its socket go: an open one
// would keep the namespace alive and be counted.
func TestMonitorNflogSocketLetGo(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		change func(*records.Record)
	}{
		{"log target kernel", func(r *records.Record) { r.Policy.Log.Target, r.Digest = config.LogKernel, "kernel" }},
		{"no log rules", func(r *records.Record) { r.Features.Log = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			m, store, _ := newRootMonitor(t)
			ctx := context.Background()
			rec := nflogRecord(t, ns.Path, idA)
			key := rec.Netns.Key()
			if err := store.Save(rec); err != nil {
				t.Fatal(err)
			}
			m.follow(ctx, key)
			s := m.socketOf(key)
			if s == nil {
				t.Fatal("no NFLOG socket for a fence of log.target nflog")
			}
			tc.change(rec)
			if err := store.Save(rec); err != nil {
				t.Fatal(err)
			}
			m.follow(ctx, key)
			if m.socketOf(key) != nil {
				t.Error("the fence still has an NFLOG socket")
			}
			waitUntil(t, "the socket closed", s.stopped)
			waitUntil(t, "bypass_hook_nflog_sockets at 0", func() bool { return gauge(t, m, "bypass_hook_nflog_sockets", nil) == 0 })
		})
	}
}

// A fence whose containers died without a poststop (a crashed runtime):
// its socket alone holds the namespace, and the next resync closes it and
// stops counting the fence.
func TestMonitorNflogReleaseDead(t *testing.T) {
	testnet.RequireRoot(t)
	sl := newSleeper(t, "")
	m, store, _ := newRootMonitor(t)
	ctx := context.Background()
	rec := nflogRecord(t, sl.nsPath, idA)
	rec.Owners[0].Pid = sl.cmd.Process.Pid
	key := rec.Netns.Key()
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	s := m.socketOf(key)
	if s == nil {
		t.Fatal("no NFLOG socket for a fence of log.target nflog")
	}
	if n := gauge(t, m, "bypass_hook_fenced_namespaces", nil); n != 1 {
		t.Errorf("bypass_hook_fenced_namespaces %v, want 1", n)
	}

	sl.kill()
	m.resync(ctx)
	waitUntil(t, "the socket closed", s.stopped)
	m.mu.Lock()
	unreachable := m.fences[key] != nil && m.fences[key].unreachable
	m.mu.Unlock()
	if !unreachable || m.socketOf(key) != nil {
		t.Errorf("fence unreachable %v, socket %v; want unreachable, none", unreachable, m.socketOf(key))
	}
	m.resync(ctx) // and it stays closed
	if m.socketOf(key) != nil {
		t.Error("a resync opened a socket again")
	}
	for _, name := range []string{"bypass_hook_fenced_namespaces", "bypass_hook_fenced_containers", "bypass_hook_nflog_sockets"} {
		if n := gauge(t, m, name, nil); n != 0 {
			t.Errorf("%s %v, want 0", name, n)
		}
	}
	if n := testutil.ToFloat64(m.metrics.errors.WithLabelValues("nflog")); n != 0 {
		t.Errorf("%v NFLOG errors, want 0", n)
	}
}

// The same as TestMonitorNflogRefence through the binaries: the hook's
// poststop and create, one right after the other, in a namespace that
// lives on; the monitor sees the attempts after as before.
func TestMonitorNflogRestart(t *testing.T) {
	testnet.RequireRoot(t)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: nflog, prefix: %s}\n", proxyAddr, testnet.RandName("r")))
	mon := startMonitor(t, cfgPath)
	s := newSleeper(t, cfgPath)
	attempt := func(n int) {
		t.Helper()
		if err := s.dial(refusedAddr); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("direct TCP: %v, want ECONNREFUSED", err)
		}
		if evs := mon.waitEvents(s.id, n, eventWait); len(evs) != n {
			t.Fatalf("%d events within %v, want %d; monitor stderr:\n%s", len(evs), eventWait, n, mon.stderr.String())
		}
	}
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	attempt(1)
	start := time.Now()
	for _, stage := range []string{"poststop", "create"} {
		if err := s.hook(stage); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("poststop and create took %s", ms(time.Since(start)))
	// Past the drain, so that the old socket, had it been closed, no
	// longer hears anything.
	time.Sleep(2 * nflogDrain)
	attempt(2)
	if strings.Contains(mon.stderr.String(), "binding NFLOG group") {
		t.Errorf("the monitor could not bind the group again:\n%s", mon.stderr.String())
	}
}

// A group another socket holds is refused with EPERM, which says so.
func TestOpenNflogGroupHeld(t *testing.T) {
	testnet.RequireRoot(t)
	path := testnet.NewNetns(t).Path
	nsID, err := netns.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ns := netns.Handle{ID: nsID, Path: path}
	first, err := openNflog(ns, 7231)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := openNflog(ns, 7231)
	if err == nil {
		second.Close()
		t.Fatal("a second socket bound the group the first holds")
	}
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "held by another listener") {
		t.Errorf("error %q; want EPERM and a word on who holds the group", err)
	}
	other, err := openNflog(ns, 7232)
	if err != nil {
		t.Errorf("another group: %v", err)
	} else {
		other.Close()
	}
}
