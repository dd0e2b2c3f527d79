// SPDX-License-Identifier: Apache-2.0

package records

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/fswatch"
)

func rec(ino uint64, owners ...string) *Record {
	r := &Record{Netns: netns.ID{Dev: 4, Ino: ino}}
	for i, o := range owners {
		r.Owners = append(r.Owners, Owner{ID: o, Bundle: "/b/" + o, Since: time.Unix(int64(1000+i), 0)})
	}
	return r
}

func entries(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(filepath.Join(s.Dir, ownersDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(p) != indexedMark {
			rel, _ := filepath.Rel(s.Dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// The index follows the records: an entry per owner while a record names
// it, gone with the owner or the record; FindOwner answers from it alone.
func TestIndexFollowsRecords(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	a := rec(1, "a", "b")
	if err := s.Save(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(rec(2, "c")); err != nil {
		t.Fatal(err)
	}
	if n := len(entries(t, s)); n != 3 {
		t.Fatalf("%d entries for 3 owners: %v", n, entries(t, s))
	}
	for id, want := range map[string]string{"a": a.Netns.Key(), "b": a.Netns.Key(), "c": rec(2).Netns.Key()} {
		if k, ok := s.FindOwner(id, "/b/"+id); !ok || k != want {
			t.Errorf("FindOwner(%s) = %q, %v; want %s", id, k, ok, want)
		}
	}
	if _, ok := s.FindOwner("a", "/other-bundle"); ok {
		t.Error("FindOwner found a by its id under another bundle")
	}
	a.RemoveOwner("b", "/b/b")
	if err := s.Save(a); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.FindOwner("b", "/b/b"); ok {
		t.Error("b left the record, and FindOwner still finds it")
	}
	if err := s.Delete(a.Netns.Key()); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s); !slices.Equal(got, []string{filepath.Join(ownersDir, ownerHash("c", "/b/c"), "netns-4-2")}) {
		t.Errorf("after the delete, entries %v; want only c's", got)
	}
	// The same container created again in another namespace before a prune
	// took the old record: poststop finds the one it joined last.
	old, again := rec(3, "d"), rec(4, "d")
	again.Owners[0].Since = old.Owners[0].Since.Add(time.Hour)
	for _, r := range []*Record{old, again} {
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	if k, _ := s.FindOwner("d", "/b/d"); k != again.Netns.Key() {
		t.Errorf("FindOwner of a container in two records = %s, want the newer %s", k, again.Netns.Key())
	}
}

// Records an older bypass-hook wrote have no entries: until they are
// indexed, a lookup the index does not answer reads them all, and indexes
// them; after that, a miss is a miss.
func TestIndexOlderRecords(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	r := rec(7, "old")
	data := []byte(`{"netns":{"dev":4,"ino":7},"owners":[{"id":"old","bundle":"/b/old"}]}`)
	if err := os.WriteFile(s.path(r.Netns.Key(), ".json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if k, ok := s.FindOwner("old", "/b/old"); !ok || k != r.Netns.Key() {
		t.Fatalf("FindOwner of an unindexed record: %q, %v", k, ok)
	}
	if !s.indexed() || len(entries(t, s)) != 1 {
		t.Errorf("after the scan: indexed %v, entries %v", s.indexed(), entries(t, s))
	}
	if _, ok := s.FindOwner("never", "/b/never"); ok {
		t.Error("found a container no record names")
	}
}

// Sweep removes what hooks killed mid-way left: an entry whose record does
// not name its owner, a temporary file, a lock file without a record; and
// leaves what a record names.
func TestSweep(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	live := rec(1, "a")
	if err := s.Save(live); err != nil {
		t.Fatal(err)
	}
	if err := s.index(Owner{ID: "ghost", Bundle: "/b/ghost"}, "netns-4-9"); err != nil {
		t.Fatal(err)
	}
	if err := s.index(Owner{ID: "ghost2", Bundle: "/b/ghost2"}, live.Netns.Key()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"netns-4-9.json.tmp", "netns-4-8.lock", live.Netns.Key() + ".lock"} {
		if err := os.WriteFile(filepath.Join(s.Dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Sweep(); err != nil {
		t.Fatal(err)
	}
	names, _ := readNames(s.Dir)
	slices.Sort(names)
	want := []string{live.Netns.Key() + ".json", live.Netns.Key() + ".lock", ownersDir}
	if !slices.Equal(names, want) {
		t.Errorf("after the sweep the state directory holds %v, want %v", names, want)
	}
	if got := entries(t, s); len(got) != 1 {
		t.Errorf("after the sweep, entries %v; want only a's", got)
	}
	if k, ok := s.FindOwner("a", "/b/a"); !ok || k != live.Netns.Key() {
		t.Error("the sweep lost a live owner's entry")
	}
}

// Save and Drop read no record: the owners the file names are those the
// record was loaded or last saved with, and a record made afresh takes them
// from the one it replaces. The index follows all the same.
func TestSaveReadsNoRecord(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	key := rec(1).Netns.Key()
	var loaded *Record
	opened := fswatch.Opens(t, s.Dir, func() {
		r := rec(1, "a", "b")
		if err := s.SaveIntent(r, IncompleteInstall); err != nil {
			t.Fatal(err)
		}
		r.Incomplete = ""
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
		var err error
		if loaded, err = s.Load(key); err != nil || loaded == nil || loaded.Incomplete != "" {
			t.Fatalf("Load after two saves: %+v, %v", loaded, err)
		}
		loaded.RemoveOwner("b", "/b/b")
		if err := s.Save(loaded); err != nil {
			t.Fatal(err)
		}
		if got := entries(t, s); !slices.Equal(got, []string{filepath.Join(ownersDir, ownerHash("a", "/b/a"), key)}) {
			t.Errorf("after b left, entries %v; want a's only", got)
		}
		fresh := rec(1, "c")
		fresh.Replaces(loaded)
		if err := s.Save(fresh); err != nil {
			t.Fatal(err)
		}
		if got := entries(t, s); !slices.Equal(got, []string{filepath.Join(ownersDir, ownerHash("c", "/b/c"), key)}) {
			t.Errorf("after a record made afresh replaced a's, entries %v; want c's only", got)
		}
		// An owner whose entry was made but whose save failed goes too.
		fresh.Owners = append(fresh.Owners, Owner{ID: "d", Bundle: "/b/d"})
		if err := s.index(fresh.Owners[1], key); err != nil {
			t.Fatal(err)
		}
		if err := s.Drop(fresh); err != nil {
			t.Fatal(err)
		}
	})
	if got := entries(t, s); len(got) != 0 {
		t.Errorf("after Drop, entries %v; want none", got)
	}
	if names, _ := readNames(s.Dir); !slices.Equal(names, []string{ownersDir}) {
		t.Errorf("after Drop the state directory holds %v", names)
	}
	if n := opened[key+".json"]; n != 1 {
		t.Errorf("the record was opened %d times; want 1 (the Load): Save and Drop read no record", n)
	}
}

// A create's prune looks at pruneBatch records at most and reads each
// once: those of namespaces that are gone go with their index entries;
// young ones, the create's own and those a hook holds stay.
func TestDropGoneNamespacesReadsEachOnce(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	old := time.Now().Add(-time.Hour)
	var keys []string
	for i := range 3 * pruneBatch {
		// Dev 4 is no nsfs: no path reaches these namespaces.
		r := rec(uint64(100+i), fmt.Sprintf("c%d", i))
		unlock, err := s.Lock(r.Netns.Key())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(r); err != nil {
			t.Fatal(err)
		}
		unlock()
		if i != 1 { // 1 stays young
			if err := os.Chtimes(s.path(r.Netns.Key(), ".json"), old, old); err != nil {
				t.Fatal(err)
			}
		}
		keys = append(keys, r.Netns.Key())
	}
	held, err := s.Lock(keys[2])
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	var pruned []string
	opened := fswatch.Opens(t, s.Dir, func() { pruned = s.DropGoneNamespaces(keys[0]) })
	reads := 0
	for name, n := range opened {
		if _, ok := Key(name); ok {
			reads += n
			if n > 1 {
				t.Errorf("%s read %d times; want once", name, n)
			}
		}
	}
	if reads > pruneBatch {
		t.Errorf("the prune read %d records; at most %d", reads, pruneBatch)
	}
	// The directory's order is the file system's: which of the records the
	// look reached is not known, only what became of each.
	for i, k := range keys {
		_, err := os.Lstat(s.path(k, ".json"))
		gone := errors.Is(err, os.ErrNotExist)
		if i <= 2 && gone {
			t.Errorf("record %d (%s) was pruned; the create's own, a young one and a held one stay", i, k)
		}
		if gone != slices.Contains(pruned, k) {
			t.Errorf("record %d: gone %v, reported pruned %v", i, gone, slices.Contains(pruned, k))
		}
		if names, _ := readNames(s.ownerDir(fmt.Sprintf("c%d", i), fmt.Sprintf("/b/c%d", i))); gone == (len(names) > 0) {
			t.Errorf("record %d: gone %v, index entries %v", i, gone, names)
		}
	}
	if len(pruned) == 0 {
		t.Error("the prune took out no record of a gone namespace")
	}
}
