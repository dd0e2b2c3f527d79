// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
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

// A create's prune keeps the record of a namespace that exists although no
// path reaches it (here an open file holds it; a socket made in it would
// do the same, see netns.Exists), where the kernel gives file handles of
// namespaces, and takes it out once the namespace is gone.
func TestDropGoneNamespacesKeepsAnUnreachableNamespace(t *testing.T) {
	child, path := testnet.StartUnshared(t)
	ns, closeNs, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { closeNs() }()
	fh := netns.FileHandle(ns)
	if fh == "" {
		t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
	}
	s := &Store{Dir: t.TempDir()}
	r := &Record{Netns: ns.ID, NsHandle: fh, Paths: []string{path}, Owners: []Owner{{ID: "c", Bundle: "/b/c", Pid: child.Process.Pid, Start: StartOf(child.Process.Pid)}}}
	unlock, err := s.Lock(r.Netns.Key())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(r); err != nil {
		t.Fatal(err)
	}
	unlock()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(s.path(r.Netns.Key(), ".json"), old, old); err != nil {
		t.Fatal(err)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	if _, found := netns.Find(ns.ID, path); found {
		t.Fatal("a path still reaches the namespace: the test does not test")
	}
	if pruned := s.DropGoneNamespaces(""); len(pruned) > 0 {
		t.Errorf("the prune took out %v, the record of a namespace that exists", pruned)
	}
	closeNs()
	closeNs = func() {}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pruned := s.DropGoneNamespaces(""); slices.Contains(pruned, r.Netns.Key()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("10 s after the namespace was let go, the prune still keeps its record")
		}
	}
	if names, _ := readNames(s.ownerDir("c", "/b/c")); len(names) > 0 {
		t.Errorf("the pruned record's index entries stay: %v", names)
	}
}
