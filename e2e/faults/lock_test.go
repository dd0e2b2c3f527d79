// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// The record lock of a namespace held elsewhere past the hook's deadline (a
// hook stuck in the kernel, an operator's flock): a create and a poststop
// waiting for it end by themselves, with an error that names the lock,
// and change nothing: the fence and its record stay as they were, and the
// poststop run again once the lock is free clears both.
func TestLockHeldPastDeadline(t *testing.T) {
	e := newEnv(t, "nftables")
	ns := testnet.NewNetns(t)
	fenced := startIn(t, ns)
	if code, stderr := e.run("create", fenced.state()); code != 0 {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(e.stateDir, id.Key()+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(e.stateDir, id.Key()+".json"))

	joiner := startIn(t, ns)
	fenced.kill()
	type result struct {
		code   int
		stderr string
		took   time.Duration
	}
	var create, poststop result
	var wg sync.WaitGroup
	for _, r := range []struct {
		stage string
		out   *result
		c     *container
	}{{"create", &create, joiner}, {"poststop", &poststop, fenced}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := r.c.state()
			if r.stage == "poststop" {
				st = r.c.stopped()
			}
			start := time.Now()
			code, stderr, err := e.try(r.stage, st)
			if err != nil {
				t.Errorf("%s: %v", r.stage, err)
			}
			*r.out = result{code, stderr, time.Since(start)}
		}()
	}
	wg.Wait()
	for _, r := range []struct {
		stage string
		res   result
	}{{"create", create}, {"poststop", poststop}} {
		t.Logf("%s with the record lock held elsewhere: exit %d after %s: %s", r.stage, r.res.code, r.res.took.Round(time.Millisecond), strings.TrimSpace(r.res.stderr))
		if r.res.code != 1 || !strings.Contains(r.res.stderr, "lock") {
			t.Errorf("%s with the lock held: exit %d: %s; want 1 and an error naming the lock", r.stage, r.res.code, r.res.stderr)
		}
	}
	after, _ := os.ReadFile(filepath.Join(e.stateDir, id.Key()+".json"))
	if l := e.look(ns); !l.fence || string(after) != string(before) {
		t.Errorf("after the lock's timeouts: %+v, record changed %v; want the fence and its record as they were", l, string(after) != string(before))
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	joiner.kill()
	for _, c := range []*container{fenced, joiner} {
		if code, stderr := e.run("poststop", c.stopped()); code != 0 {
			t.Errorf("poststop once the lock is free: exit %d: %s", code, stderr)
		}
	}
	if l := e.look(ns); l.fence || l.record {
		t.Errorf("after the poststops: %+v, want nothing", l)
	}
}
