// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/fswatch"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// pruneShare is how many other records a create may read, each once: the
// few its prune looks at (records.pruneBatch), whatever the state
// directory holds.
const pruneShare = 4

// A create and a poststop, run as the runtime runs the hook, read their own
// record at most once and a bounded number of the others: counted with
// inotify, opens of each record file, with 1,000 records of namespaces that
// are gone (what a crashed runtime leaves: an hour old, each with its lock
// file, so that a create's prune takes some out). Each way a create meets
// its namespace is counted: the first container (no record yet: nothing to
// read, and its two saves read none), one that joins the fence (its record,
// once), and one that joins after a config change and replaces the fence
// (the same). A poststop reads its own record once, found through the
// index, and no other.
func TestCreateReadsBoundedRecords(t *testing.T) {
	testnet.RequireRoot(t)
	e := newEnv(t, nil, config.BackendNftables, "proxies: ['198.51.100.1:3128']\n")
	store, err := records.Open(e.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	const many = 1000
	old := time.Now().Add(-time.Hour)
	for i := range many {
		r := testrecord.New(uint64(900000+i), fmt.Sprintf("gone-%04d", i), config.ModeEnforce, config.LogNflog, fmt.Sprintf("gone-%04d", i))
		unlock, err := store.Lock(r.Netns.Key())
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Save(r); err != nil {
			t.Fatal(err)
		}
		unlock()
		if err := os.Chtimes(filepath.Join(store.Dir, r.Netns.Key()+".json"), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// The same config with an allow entry: what the operator changed while
	// the pod ran.
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(e.dir, "changed.yaml")
	if err := os.WriteFile(changed, append(cfg, "allow: [{cidr: 198.51.100.7/32, ports: [443], protocol: tcp}]\n"...), 0o600); err != nil {
		t.Fatal(err)
	}

	ns := testnet.NewNetns(t)
	first, second, third := startIn(t, ns), startIn(t, ns), startIn(t, ns)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	own := id.Key() + ".json"
	stopped := func(c *container) specs.State {
		return specs.State{ID: c.id, Status: specs.StateStopped, Bundle: testBundle}
	}
	for _, s := range []struct {
		what, cfg, stage string
		st               specs.State
		wantOwn, others  int // reads of its own record; of others, at most
	}{
		{"create of the namespace's first container", e.cfgPath, "create", *first.state(), 0, pruneShare},
		{"create of a container that joins the fence", e.cfgPath, "create", *second.state(), 1, pruneShare},
		{"create after a config change, which replaces the fence", changed, "create", *third.state(), 1, pruneShare},
		{"poststop of a container that leaves the fence", changed, "poststop", stopped(third), 1, 0},
		{"poststop of a container that leaves the fence", changed, "poststop", stopped(second), 1, 0},
		{"poststop of the last container, which takes the fence out", changed, "poststop", stopped(first), 1, 0},
		{"poststop of a container never fenced", changed, "poststop", specs.State{ID: "never-fenced", Status: specs.StateStopped, Bundle: testBundle}, 0, 0},
	} {
		opened := fswatch.Opens(t, store.Dir, func() {
			if code, stderr := runHookBin(t, s.cfg, s.stage, s.st); code != 0 {
				t.Fatalf("%s: exit %d: %s", s.what, code, stderr)
			}
		})
		others := 0
		for name, n := range opened {
			if _, ok := records.Key(name); !ok || name == own {
				continue
			}
			others += n
			if n > 1 {
				t.Errorf("%s: read record %s %d times; want once at most", s.what, name, n)
			}
		}
		t.Logf("%s, with %d records in the state directory: read its own record %d times, others %d times", s.what, many, opened[own], others)
		if opened[own] != s.wantOwn {
			t.Errorf("%s: read its own record %d times; want %d", s.what, opened[own], s.wantOwn)
		}
		if others > s.others {
			t.Errorf("%s: read other records %d times; want %d at most", s.what, others, s.others)
		}
		if s.cfg == changed && s.stage == "create" && !strings.Contains(e.hookLog(), "follows the newest config") {
			t.Errorf("%s: the fence was not replaced; hook log:\n%s", s.what, e.hookLog())
		}
	}
	if _, err := os.Stat(filepath.Join(store.Dir, own)); !os.IsNotExist(err) {
		t.Errorf("the last poststop left the namespace's record (%v)", err)
	}
	// The creates' prunes did take records out: the reads counted above
	// include a prune's.
	if keys, _ := store.Keys(); len(keys) >= many {
		t.Errorf("%d records of gone namespaces after three creates; their prunes took none out", len(keys))
	}
}
