// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

func TestStoreRefusesOpenDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (the state directory must be owned by root)")
	}
	base := t.TempDir()
	made := filepath.Join(base, "new", "state")
	if _, err := Open(made); err != nil {
		t.Fatalf("a new state directory: %v", err)
	}
	if fi, _ := os.Stat(made); fi.Mode().Perm() != 0o700 {
		t.Errorf("made with mode %v, want 0700", fi.Mode().Perm())
	}

	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if _, err := Open(open); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("a 0755 state directory: got %v", err)
	}
	foreign := filepath.Join(base, "foreign")
	os.Mkdir(foreign, 0o700)
	os.Chown(foreign, 1000, 1000)
	if _, err := Open(foreign); err == nil || !strings.Contains(err.Error(), "chown root") {
		t.Errorf("a state directory owned by uid 1000: got %v", err)
	}
}

// The lock survives Delete racing with Lock: one holder at a time, and
// every holder finds the record whole, or gone, never half written. Delete
// ends a holder's work (the lock file goes with the record), so the count of
// holders drops before it.
func TestStoreLockAndDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (the state directory must be owned by root)")
	}
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	id := netns.ID{Dev: 4, Ino: 42}
	var wg sync.WaitGroup
	var mu sync.Mutex
	inside := 0
	enter := func(d int) {
		mu.Lock()
		defer mu.Unlock()
		inside += d
		if inside > 1 {
			t.Errorf("%d holders of one lock", inside)
		}
	}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := s.Lock(id.Key())
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			enter(1)
			if r, err := s.Load(id.Key()); err != nil || (r != nil && len(r.Owners) != 1) {
				t.Errorf("a holder found %+v, %v", r, err)
			}
			if i%2 == 0 {
				if err := s.Save(&Record{Netns: id, Owners: []Owner{{ID: "c"}}}); err != nil {
					t.Error(err)
				}
				enter(-1)
				return
			}
			enter(-1)
			if err := s.Delete(id.Key()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
