// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// A record a killed create left incomplete, its rules not yet in: prune
// installs the fence whole and completes the record where the owner still
// runs, and takes record and rules out where it does not.
func TestPruneResolvesIncomplete(t *testing.T) {
	for _, name := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, alive := range []bool{true, false} {
				e := newEnv(t, nil, name, "proxies: ['198.51.100.1:3128']\n")
				ns := testnet.NewNetns(t)
				c := startIn(t, ns)
				if _, err := e.create(c.state()); err != nil {
					t.Fatal(err)
				}
				b, err := backend.New(name)
				if err != nil {
					t.Fatal(err)
				}
				store, err := records.Open(e.cfg.StateDir)
				if err != nil {
					t.Fatal(err)
				}
				rec := e.records()[0]
				rec.Incomplete, rec.RulesDigest = records.IncompleteInstall, nil
				if err := store.Save(rec); err != nil {
					t.Fatal(err)
				}
				if err := b.Remove(nsOf(t, ns)); err != nil {
					t.Fatal(err)
				}
				if !alive {
					c.kill()
				}
				if _, _, _, err := e.hook().RemoveAbandonedFences(0, time.Now()); err != nil {
					t.Fatal(err)
				}
				recs := e.records()
				seen, err := b.Inspect(nsOf(t, ns))
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case alive && (len(recs) != 1 || recs[0].Incomplete != ""):
					t.Errorf("owner alive: records %+v, want one complete", recs)
				case alive:
					if whole, why := seen.Whole(recs[0].RulesDigest); !whole {
						t.Errorf("owner alive: the fence prune completed is not whole: %s", why)
					}
				case len(recs) != 0 || seen.Present:
					t.Errorf("owner gone: %d records, fence present %v; want neither", len(recs), seen.Present)
				}
			}
		})
	}
}
