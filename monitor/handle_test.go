// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// A fence whose namespace only a thread other than its process's first
// holds (no path reaches it) is still read by the monitor through the
// namespace's file handle: its nf_tables generation, and its rules'
// counters, by which kernel log lines are verified. On main both failed:
// the lines were dropped as unverified.
func TestMonitorReadsAFenceOnlyAThreadHolds(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "nft")
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nbackend: nftables\n")
	s := newSleeper(t, cfgPath)
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store := &records.Store{Dir: filepath.Join(filepath.Dir(cfgPath), "state")}
	recs, err := store.All()
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records after one create (%v)", len(recs), err)
	}
	rec := recs[0]
	if rec.NsHandle == "" {
		t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
	}
	release := testnet.HoldInThread(t, s.nsPath)
	defer release()
	s.kill()
	if _, found := netns.Find(rec.Netns, rec.Hints()...); found {
		t.Fatal("a path still reaches the namespace: the case is not made")
	}
	logger, _ := test.NewNullLogger()
	m := newMonitor(Options{Config: cfg, Out: &syncBuffer{}, Log: logger, Resync: 10 * time.Second, Forget: time.Minute, NewBackend: backend.New}, store)
	t.Cleanup(m.shutdown)
	f := &fence{key: rec.Netns.Key(), rec: rec}
	if _, ok := m.gens.read(f, false); !ok {
		t.Error("the generation of a fence only a thread holds was not read")
	}
	m.gens.drop(f.key)
	counts, err := m.readLogged(rec)
	if err != nil || len(counts) == 0 {
		t.Errorf("the counters of a fence only a thread holds: %v, %v", counts, err)
	}
	if why, ok := m.inspect(rec); !ok || why != "" {
		t.Errorf("inspecting a fence only a thread holds: %q, %v; want whole", why, ok)
	}
}
