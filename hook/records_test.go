package hook

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestStoreRefusesOpenDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (the state directory must be owned by root)")
	}
	base := t.TempDir()
	made := filepath.Join(base, "new", "state")
	if _, err := OpenStore(made); err != nil {
		t.Fatalf("a new state directory: %v", err)
	}
	if fi, _ := os.Stat(made); fi.Mode().Perm() != 0o700 {
		t.Errorf("made with mode %v, want 0700", fi.Mode().Perm())
	}

	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if _, err := OpenStore(open); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("a 0755 state directory: got %v", err)
	}
	foreign := filepath.Join(base, "foreign")
	os.Mkdir(foreign, 0o700)
	os.Chown(foreign, 1000, 1000)
	if _, err := OpenStore(foreign); err == nil || !strings.Contains(err.Error(), "chown root") {
		t.Errorf("a state directory owned by uid 1000: got %v", err)
	}
}

// The lock survives Delete racing with Lock: every holder sees a record
// that was there when it locked, or none, never a half-deleted one.
func TestStoreLockAndDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (the state directory must be owned by root)")
	}
	s, err := OpenStore(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	id := NetnsID{Dev: 4, Ino: 42}
	var wg sync.WaitGroup
	var mu sync.Mutex
	inside := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := s.Lock(id.Key())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside++
			if inside != 1 {
				t.Errorf("%d holders of one lock", inside)
			}
			mu.Unlock()
			if i%2 == 0 {
				s.Save(&Record{Netns: id, Owners: []Owner{{ID: "c"}}})
			} else {
				s.Delete(id.Key())
			}
			mu.Lock()
			inside--
			mu.Unlock()
			unlock()
		}()
	}
	wg.Wait()
}
