// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// readBound is how many other records a create or a poststop may open,
// whatever the state directory holds: a create's prune looks at a few.
const readBound = 10

// A create and a poststop, run as the runtime runs the hook, open a bounded
// number of the other records in the state directory: counted with
// inotify, with 1,000 records of namespaces that are gone (what a crashed
// runtime leaves; an hour old, so that a prune looks at them).
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
		if err := store.Save(r); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(store.Dir, r.Netns.Key()+".json"), old, old); err != nil {
			t.Fatal(err)
		}
	}
	c := startIn(t, testnet.NewNetns(t))
	id, err := netns.Stat(netns.PidPath(c.pid()))
	if err != nil {
		t.Fatal(err)
	}
	own := id.Key() + ".json"

	opened := watchOpens(t, store.Dir, func() {
		if code, stderr := e.runBin("create", *c.state()); code != 0 {
			t.Fatalf("create: exit %d: %s", code, stderr)
		}
	})
	delete(opened, own)
	t.Logf("create with %d records in the state directory opened %d others", many, len(opened))
	if len(opened) > readBound {
		t.Errorf("create opened %d other records (bound %d)", len(opened), readBound)
	}

	c.kill()
	opened = watchOpens(t, store.Dir, func() {
		if code, stderr := e.runBin("poststop", specs.State{ID: c.id, Status: specs.StateStopped, Bundle: testBundle}); code != 0 {
			t.Fatalf("poststop: exit %d: %s", code, stderr)
		}
	})
	delete(opened, own)
	t.Logf("poststop with %d records in the state directory opened %d others", many, len(opened))
	if len(opened) > 0 {
		t.Errorf("poststop opened %d other records (want none: the index names its own)", len(opened))
	}
	if _, err := os.Stat(filepath.Join(store.Dir, own)); !os.IsNotExist(err) {
		t.Errorf("poststop left the container's record (%v)", err)
	}

	// The poststop of a container no record names (one the config does
	// not select): nothing to read either.
	opened = watchOpens(t, store.Dir, func() {
		if code, stderr := e.runBin("poststop", specs.State{ID: "never-fenced", Status: specs.StateStopped, Bundle: testBundle}); code != 0 {
			t.Fatalf("poststop of a container never fenced: exit %d: %s", code, stderr)
		}
	})
	t.Logf("poststop of a container never fenced, with %d records in the state directory, opened %d", many, len(opened))
	if len(opened) > 0 {
		t.Errorf("poststop of a container never fenced opened %d records (want none)", len(opened))
	}
}

// watchOpens runs fn and returns the records (netns-*.json) opened in dir
// meanwhile, by name.
func watchOpens(t *testing.T, dir string, fn func()) map[string]bool {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	fn()
	opened := map[string]bool{}
	buf := make([]byte, 1<<16)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || n <= 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then the name.
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+size], "\x00"))
			if mask&unix.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify queue overflowed: the count is not whole")
			}
			if strings.HasPrefix(name, "netns-") && strings.HasSuffix(name, ".json") {
				opened[name] = true
			}
			off += unix.SizeofInotifyEvent + size
		}
	}
	return opened
}
