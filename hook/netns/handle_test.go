// SPDX-License-Identifier: Apache-2.0

package netns_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// A namespace that only a socket made in it holds still exists by its file
// handle, where no path reaches it (Find does not see it), and is known
// gone once the socket closes.
func TestExistsWhileOnlyASocketHoldsIt(t *testing.T) {
	// A namespace of a process of its own, as a runtime makes one; the
	// socket is ours, made in it.
	unshared := testrecord.Unshared(t)
	child, path, fh, id := unshared.Cmd, unshared.Path, unshared.Handle, unshared.ID
	socket, err := netns.Socket(path, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Close(socket) }()
	if ok, known := netns.Exists(id, fh); !ok || !known {
		t.Errorf("held by its process and a socket: Exists = %v, %v; want true, true", ok, known)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	if _, found := netns.Find(id); found {
		t.Error("Find reached a namespace that only a socket holds: the test does not test")
	}
	if ok, known := netns.Exists(id, fh); !ok || !known {
		t.Errorf("held by a socket only: Exists = %v, %v; want true, true", ok, known)
	}
	if ok, known := netns.Exists(netns.ID{Dev: id.Dev, Ino: id.Ino + 1}, fh); ok || known {
		t.Errorf("the handle of another namespace: Exists = %v, %v; want false, false", ok, known)
	}
	unix.Close(socket)
	socket = -1
	// The socket lets go of its namespace after an RCU grace period.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ok, known := netns.Exists(id, fh)
		if !ok && known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after its last socket closed: Exists = %v, %v; want false, true", ok, known)
		}
	}
	for _, fh := range []string{"", "zz", "f1:", "f1"} {
		if ok, known := netns.Exists(id, fh); ok || known {
			t.Errorf("Exists(%q) = %v, %v; want false, false", fh, ok, known)
		}
	}
}

// A namespace that only a thread other than its process's first holds is
// reached by OpenKnown through its file handle, where Find sees no path;
// the descriptor it holds is the caller's own, which InUse (prune's check)
// does not count as a use. Once the thread ends and the kernel frees the
// namespace, OpenKnown says it is gone.
func TestOpenKnownReachesANamespaceOnlyAThreadHolds(t *testing.T) {
	unshared := testrecord.Unshared(t)
	child, path, fh, id := unshared.Cmd, unshared.Path, unshared.Handle, unshared.ID
	release := testnet.HoldInThread(t, path)
	_ = child.Process.Kill()
	_ = child.Wait()
	if _, found := netns.Find(id); found {
		t.Fatal("Find reached a namespace only a non-first thread holds: the case is not made")
	}
	if _, _, ok := netns.OpenKnown(id, "", nil); ok {
		t.Error("OpenKnown without a handle reached a namespace no path reaches")
	}
	// Another device than nsfs's: no namespace has that id (the next inode
	// number may well be another namespace, found by a path).
	if _, _, ok := netns.OpenKnown(netns.ID{Dev: id.Dev + 1, Ino: id.Ino}, fh, nil); ok {
		t.Error("OpenKnown reached another namespace's handle as the one asked for")
	}
	got, closeGot, ok := netns.OpenKnown(id, fh, nil)
	if !ok {
		t.Fatal("OpenKnown did not reach the namespace by its file handle")
	}
	if at, err := netns.Stat(got.Path); err != nil || at != id || got.ID != id {
		t.Errorf("OpenKnown's %s is %v (%v); want %v", got.Path, at, err, id)
	}
	// Our thread is skipped (the caller's own), our descriptor too.
	if why := netns.InUse(id); why != "" {
		t.Errorf("InUse = %q while only the caller holds the namespace (a thread, and OpenKnown's descriptor)", why)
	}
	release()
	// The descriptor alone keeps it; once closed, the kernel frees it.
	if ok, known := netns.Exists(id, fh); !ok || !known {
		t.Errorf("held by OpenKnown's descriptor: Exists = %v, %v", ok, known)
	}
	closeGot()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, known := netns.Exists(id, fh); !ok && known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("10 s after the last thread and descriptor let go, the namespace still opens by its handle")
		}
	}
	if _, _, ok := netns.OpenKnown(id, fh, []string{path}); ok {
		t.Error("OpenKnown reached a namespace that is gone")
	}
}

// The kernel gives a freed namespace's inode number to the next one made.
// A record whose namespace is gone then names, by number, a live namespace
// that is not its own: FindKnown and OpenByPath tell them apart by the
// file handle, and take a path with no handle recorded on its number.
func TestFindKnownTellsARecycledNumber(t *testing.T) {
	goneHandle := testrecord.GoneHandle(t)
	// The live namespace that, for this test, has the gone one's number.
	live := testrecord.Unshared(t)
	path, liveHandle, id := live.Path, live.Handle, live.ID

	for _, c := range []struct {
		name string
		fh   string
		want bool
	}{
		{"its own handle", liveHandle, true},
		{"no handle recorded", "", true},
		{"the handle of the gone namespace", goneHandle, false},
	} {
		if _, ok := netns.FindKnown(id, c.fh, path); ok != c.want {
			t.Errorf("%s: FindKnown = %v; want %v", c.name, ok, c.want)
		}
		ns, closeNs, ok := netns.OpenByPath(id, c.fh, []string{path})
		if ok != c.want {
			t.Errorf("%s: OpenByPath = %v; want %v", c.name, ok, c.want)
		}
		if ok {
			if ns.ID != id || netns.FileHandle(ns) != liveHandle {
				t.Errorf("%s: OpenByPath holds %v; want %v", c.name, ns.ID, id)
			}
			closeNs()
		}
		if _, closeNs, ok := netns.OpenKnown(id, c.fh, []string{path}); ok != c.want {
			t.Errorf("%s: OpenKnown = %v; want %v", c.name, ok, c.want)
		} else if ok {
			closeNs()
		}
	}
}
