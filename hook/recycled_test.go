// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	hookbackend "github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// The kernel gives the inode number of a freed network namespace to the
// next one made, so the number of a gone container's namespace may be
// another live container's by the time its poststop (or a prune) comes.
// Here the gone container's record (its own state directory) names the
// number of a namespace that another state directory fenced, with the file
// handle of the namespace it was made for, which is gone: its poststop
// drops the record and leaves the other fence in place.
func TestPoststopLeavesARecycledNumberAlone(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			const proxies = "proxies: [\"198.51.100.1:3128\"]\n"
			other := newEnv(t, nil, backend, proxies)
			nsB := testnet.NewNetns(t)
			b := startIn(t, nsB)
			if _, err := other.create(b.state()); err != nil {
				t.Fatal(err)
			}
			recB := other.records()[0]

			// The namespace the gone container's record was made for.
			gone := startUnshared(t)
			ns, closeNs, err := netns.Open(netns.PidPath(gone.pid()))
			if err != nil {
				t.Fatal(err)
			}
			goneHandle := netns.FileHandle(ns)
			closeNs()
			if goneHandle == "" {
				t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
			}
			gone.kill()

			mine := newEnv(t, nil, backend, proxies)
			store, err := records.Open(mine.cfg.StateDir)
			if err != nil {
				t.Fatal(err)
			}
			rec := *recB
			rec.NsHandle = goneHandle
			rec.Owners = []records.Owner{{ID: gone.id, Bundle: testBundle, Pid: gone.pid()}}
			if err := store.Save(&rec); err != nil {
				t.Fatal(err)
			}
			res, err := mine.poststop(gone.id)
			if err != nil {
				t.Fatalf("poststop of the gone container: %v", err)
			}
			t.Logf("poststop of the gone container: %s", res.Action)
			if n := len(mine.records()); n != 0 {
				t.Errorf("the gone container's record stays (%d records)", n)
			}
			be, err := hookbackend.New(backend)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := installed(be, nsOf(t, nsB)); err != nil || !ok {
				t.Errorf("the fence of the namespace that has the number now: installed %v, %v; want it left in place", ok, err)
			}
		})
	}
}

// A prune asks whether anything still uses a stale record's namespace by
// its number: once the namespace is gone, that number may be a newer
// namespace's, where processes run. The record's file handle says it is
// gone; the record goes, and the newer namespace's fence stays.
func TestPruneLeavesARecycledNumberAlone(t *testing.T) {
	const proxies = "proxies: [\"198.51.100.1:3128\"]\n"
	other := newEnv(t, nil, config.BackendIptables, proxies)
	nsB := testnet.NewNetns(t)
	b := startIn(t, nsB)
	if _, err := other.create(b.state()); err != nil {
		t.Fatal(err)
	}
	recB := other.records()[0]

	mine := newEnv(t, nil, config.BackendIptables, proxies)
	store, err := records.Open(mine.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := *recB
	rec.NsHandle = testrecord.GoneHandle(t)
	rec.Owners = []records.Owner{{ID: "gone-container", Bundle: testBundle, Pid: -1}}
	unlock, err := store.Lock(rec.Netns.Key()) // as a hook writes a record
	if err != nil {
		t.Fatal(err)
	}
	err = store.Save(&rec)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	pruned, kept, _, err := mine.hook().RemoveAbandonedFences(0, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pruned %+v, kept %+v", pruned, kept)
	if n := len(mine.records()); n != 0 || len(kept) != 0 {
		t.Errorf("the gone namespace's record stays (%d records; kept %+v)", n, kept)
	}
	be, err := hookbackend.New(config.BackendIptables)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := installed(be, nsOf(t, nsB)); err != nil || !ok {
		t.Errorf("the fence of the namespace that has the number now: installed %v, %v; want it left in place", ok, err)
	}
}
