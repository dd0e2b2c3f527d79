// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// A record renamed into place is read again, though the cache holds the
// one before, even when the new file has the same size; a record just
// written is not cached (its stamp may not tell it from the next yet).
func TestPeekReadsRenamedRecord(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	if err := s.Save(rec(1, "a")); err != nil {
		t.Fatal(err)
	}
	key := rec(1).Netns.Key()
	first, err := s.Cached(key)
	if err != nil || first == nil {
		t.Fatalf("Cached = %v, %v", first, err)
	}
	if again, _ := s.Cached(key); again == first {
		t.Fatal("a record written less than Settled ago was taken from the cache")
	}
	time.Sleep(Settled + 100*time.Millisecond)
	cachedRec, _ := s.Cached(key)
	if again, _ := s.Cached(key); again != cachedRec {
		t.Fatal("an unchanged, settled record was parsed again: no cache")
	}
	before, _ := os.Stat(s.path(key, ".json"))
	if err := s.Save(rec(1, "b")); err != nil { // same size: "a" and "b"
		t.Fatal(err)
	}
	if after, _ := os.Stat(s.path(key, ".json")); after.Size() != before.Size() {
		t.Fatalf("the test wants two versions of one size, got %d and %d bytes", before.Size(), after.Size())
	}
	got, err := s.Cached(key)
	if err != nil || got == nil || len(got.Owners) != 1 || got.Owners[0].ID != "b" {
		t.Fatalf("after a rename in place, Cached = %+v, %v; want the record of owner b", got, err)
	}
	if err := s.Delete(key); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Cached(key); got != nil || err != nil {
		t.Fatalf("after Delete, Cached = %+v, %v; want nothing", got, err)
	}
}

// ReapAbandoned, whose first look is at the cached record, still sees an
// owner whose process ended after that look, a record replaced since, and
// removes a fence only when its owners have been gone for the grace
// period; a live owner's fence stays; with pidfds kept of the owners
// (the monitor's store) as without.
func TestReapAbandonedWithCache(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "proc", true: "pidfds"}[keep], func(t *testing.T) { testReapAbandonedWithCache(t, keep) })
	}
}

func testReapAbandonedWithCache(t *testing.T, keepPidfds bool) {
	own, ok := netns.Peek(netns.PidPath(os.Getpid()))
	if !ok {
		t.Skip("cannot read this process's network namespace")
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Skip("cannot start sleep:", err)
	}
	defer sleeper.Process.Kill()
	s := &Store{Dir: t.TempDir(), KeepPidfds: keepPidfds}
	owner := func(id string, pid int) *Record {
		return &Record{Netns: own, Owners: []Owner{{ID: id, Pid: pid, Start: StartOf(pid)}}}
	}
	key := own.Key()
	save := func(r *Record) {
		t.Helper()
		unlock, err := s.Lock(key) // as a hook does: the lock file is made with the record
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	save(owner("sleeper", sleeper.Process.Pid))
	const grace = time.Minute
	var removed []string
	reap := func(now time.Time) time.Time {
		t.Helper()
		_, _, next, err := s.ReapAbandoned(grace, now, func(*Record) string { return "" }, func(k string, _ *Record) error {
			removed = append(removed, k)
			return s.Delete(k)
		})
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	staleSince := func() time.Time {
		t.Helper()
		r, err := s.Load(key)
		if err != nil || r == nil {
			t.Fatalf("record: %v, %v", r, err)
		}
		return r.Owners[0].StaleSince
	}

	time.Sleep(Settled + 100*time.Millisecond)
	now := time.Now()
	if next := reap(now); !next.IsZero() || len(removed) != 0 || !staleSince().IsZero() {
		t.Fatalf("owner running: next %v, removed %v, stale since %v; want nothing done", next, removed, staleSince())
	}
	reap(now) // from the cache this time
	sleeper.Process.Kill()
	sleeper.Wait()
	if next := reap(now); !next.Equal(now.Add(grace)) || !staleSince().Equal(now) || len(removed) != 0 {
		t.Fatalf("owner gone: next %v, stale since %v, removed %v; want the owner marked at %v and nothing removed", next, staleSince(), removed, now)
	}
	reap(now.Add(grace / 2))
	if len(removed) != 0 {
		t.Fatalf("removed %v within the grace period", removed)
	}

	// Replaced by a live owner's record (the same namespace fenced again):
	// kept, however late.
	save(owner("self", os.Getpid()))
	reap(now.Add(10 * grace))
	if len(removed) != 0 || !staleSince().IsZero() {
		t.Fatalf("live owner: removed %v, stale since %v; want it kept, not marked", removed, staleSince())
	}
	time.Sleep(Settled + 100*time.Millisecond)
	reap(now.Add(10 * grace)) // cached now

	// Replaced again, by the gone owner's: marked at the next look, then
	// removed after the grace period.
	save(owner("sleeper", sleeper.Process.Pid))
	later := now.Add(20 * grace)
	reap(later)
	if !staleSince().Equal(later) || len(removed) != 0 {
		t.Fatalf("replaced record: stale since %v, removed %v; want marked at %v", staleSince(), removed, later)
	}
	reap(later.Add(grace))
	if len(removed) != 1 || removed[0] != key {
		t.Fatalf("removed %v, want [%s]", removed, key)
	}
}
