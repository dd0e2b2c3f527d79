// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// countingBackend counts the full readings of fences (Inspect).
type countingBackend struct {
	backend.Backend
	inspects *atomic.Int64
}

func (c countingBackend) Inspect(ns netns.Handle) (backend.Seen, error) {
	c.inspects.Add(1)
	return c.Backend.Inspect(ns)
}

// The monitor reads an nftables fence in full only when its namespace's
// ruleset changed since it was last read whole; a rule put in front of the
// fence after that is still seen at the next resync. A fence of the
// iptables backend (legacy iptables moves no generation) is read at every
// resync, as before.
func TestMonitorReadsChangedFencesOnly(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "nft", "iptables", "ip6tables")
	for _, b := range []string{config.BackendNftables, config.BackendIptables} {
		t.Run(b, func(t *testing.T) {
			cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nbackend: "+b+"\nlog: {target: nflog}\n")
			s := newSleeper(t, cfgPath)
			if err := s.hook("create"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.hook("poststop") })
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			var inspects atomic.Int64
			logger, _ := test.NewNullLogger()
			out := &syncBuffer{}
			m := newMonitor(Options{Config: cfg, Out: out, Log: logger, Resync: 10 * time.Second, Forget: time.Minute,
				NewBackend: func(name string) (backend.Backend, error) {
					real, err := backend.New(name)
					return countingBackend{real, &inspects}, err
				}}, &records.Store{Dir: filepath.Join(filepath.Dir(cfgPath), "state")})
			t.Cleanup(m.shutdown)
			ctx := context.Background()
			// The fence's turn to be read in full comes in
			// fullReadTurns-1 resyncs from the first, not within this test.
			id, err := netns.Stat(s.nsPath)
			if err != nil {
				t.Fatal(err)
			}
			m.gens.pass = turnOf(id.Key(), fullReadTurns(m.opts.Resync))

			m.resync(ctx)
			first := inspects.Load()
			if first != 1 {
				t.Fatalf("the first resync read the fence %d times, want 1", first)
			}
			for range 3 {
				m.resync(ctx)
			}
			again := inspects.Load() - first
			switch want := map[string]int64{config.BackendNftables: 0, config.BackendIptables: 3}[b]; {
			case again != want:
				t.Errorf("three resyncs with nothing changed read the fence %d times, want %d", again, want)
			}

			tamper := map[string][]string{
				config.BackendNftables: {"nft", "insert", "rule", "inet", "bypass_hook", "output", "accept"},
				config.BackendIptables: {"iptables", "-w", "-I", "OUTPUT", "1", "-j", "ACCEPT"},
			}[b]
			cmd := exec.Command("nsenter", append([]string{"--net=" + s.nsPath, "--"}, tamper...)...)
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v: %s", tamper, err, o)
			}
			m.resync(ctx)
			var seen bool
			for _, ev := range out.events(t) {
				seen = seen || (ev.Action == ActionNotWhole && ev.Container == s.id)
			}
			if !seen {
				t.Fatalf("no %s event at the first resync after %v; events: %+v", ActionNotWhole, tamper, out.events(t))
			}
		})
	}
}

// Every fence has its turn to be read in full, however long its
// generation stays the same: one resync in fullReadEvery/resync.
func TestFullReadTurns(t *testing.T) {
	rec := &records.Record{}
	for _, resync := range []time.Duration{time.Second, 10 * time.Second, time.Hour} {
		g := &generations{whole: map[string]readWhole{"netns-1-2": {gen: 7}}}
		turns := int(max(1, fullReadEvery/resync))
		full := 0
		for range 2 * turns {
			g.pass++
			if !g.unchanged("netns-1-2", rec, 7, resync) {
				full++
			}
		}
		if full != 2 {
			t.Errorf("resync %s: %d full readings in %d resyncs, want 2", resync, full, 2*turns)
		}
		if g.unchanged("netns-1-2", rec, 8, resync) || g.unchanged("netns-9-9", rec, 7, resync) {
			t.Errorf("resync %s: a changed generation or an unknown fence taken as unchanged", resync)
		}
	}
}

// A namespace fenced again under another backend (iptables, after a
// config change) lets go of the socket kept for its nftables generation:
// kept, it would hold the namespace for as long as the record lives.
func TestGenerationSocketLetGoWhenBackendChanges(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "nft")
	cfgPath, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nbackend: nftables\nlog: {target: nflog}\n")
	s := newSleeper(t, cfgPath)
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.hook("poststop") })
	store := &records.Store{Dir: filepath.Join(filepath.Dir(cfgPath), "state")}
	recs, err := store.All()
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d records after one create (%v)", len(recs), err)
	}
	var g generations
	t.Cleanup(func() { g.keepOnly(nil) })
	f := &fence{key: recs[0].Netns.Key(), rec: recs[0]}
	if _, ok := g.read(f, false); !ok || g.kept[f.key] == nil {
		t.Fatalf("the generation of an nftables fence was not read on a kept socket (read %v)", ok)
	}
	now := *recs[0]
	now.Backend = config.BackendIptables
	f.rec = &now
	if _, ok := g.read(f, false); ok {
		t.Error("an iptables fence has a generation")
	}
	if g.kept[f.key] != nil {
		t.Error("the socket kept for the nftables fence is still open after the namespace was fenced again with iptables")
	}
}
