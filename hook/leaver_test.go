// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// startLeaver runs in ns a stand-in for a container's pid 1 that, when
// leave is called, moves into a network namespace of its own (a workload
// does it with `unshare -Urn`, no capability needed), keeping its pid and
// start time.
func startLeaver(t *testing.T, ns *testnet.Netns) (c *container, leave func()) {
	t.Helper()
	testnet.RequireTools(t, "unshare")
	cmd := ns.Command(context.Background(), "sh", "-c", "read x; exec unshare --net sleep 3600")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process in %s: %v", ns.Name, err)
	}
	c = &container{id: testnet.RandName("ctr-") + "leaver", cmd: cmd}
	t.Cleanup(c.kill)
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	wait := func(inside bool) {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			got, ok := netns.Peek(netns.PidPath(c.pid()))
			if ok && (got == want) == inside {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d: in %s is not %v", c.pid(), ns.Name, inside)
			}
		}
	}
	wait(true)
	return c, func() {
		t.Helper()
		if _, err := io.WriteString(in, "\n"); err != nil {
			t.Fatal(err)
		}
		wait(false)
	}
}

func ownerIDs(rec *records.Record) []string {
	var ids []string
	for _, o := range rec.Owners {
		ids = append(ids, o.ID)
	}
	return ids
}

// A container's pid 1 moves into a namespace of its own (its workers may
// stay in the fenced one); a second container joins the namespace and
// stops. The first is still an owner, and the second's poststop leaves the
// fence in place. On main the join dropped the first as gone, and the
// second's poststop took the fence out as the last owner's.
func TestJoinKeepsOwnerWhosePid1Left(t *testing.T) {
	testnet.RequireRoot(t)
	for _, name := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ns := testnet.NewNetns(t)
			e := newEnv(t, nil, name, "proxies: ['198.51.100.1:3128']\n")
			leaver, leave := startLeaver(t, ns)
			if _, err := e.create(leaver.state()); err != nil {
				t.Fatal(err)
			}
			leave()
			joiner := startIn(t, ns)
			if _, err := e.create(joiner.state()); err != nil {
				t.Fatal(err)
			}
			if recs := e.records(); len(recs) != 1 || !slices.Contains(ownerIDs(recs[0]), leaver.id) {
				t.Errorf("after the join the owners are %v; want the container whose pid 1 left (%s) among them", ownerIDs(recs[0]), leaver.id)
			}
			joiner.kill()
			res, err := e.poststop(joiner.id)
			if err != nil {
				t.Fatal(err)
			}
			b, err := backend.New(name)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := installed(b, nsOf(t, ns)); err != nil || !ok {
				t.Errorf("the joiner's poststop (%s) took the fence out while the first container runs: installed %v, %v\nhook log:\n%s", res.Action, ok, err, e.hookLog())
			}
		})
	}
}

// The same owner meets a namespace with its record's inode number but no
// fence in it: not the namespace it left (that one died, and the kernel
// gave its number to a new one). The newcomer does not join the old
// owner: the fence is the newcomer's, logged under its id.
func TestJoinDropsOwnerWhoseFenceIsGone(t *testing.T) {
	testnet.RequireRoot(t)
	name := backends(t)[0]
	ns := testnet.NewNetns(t)
	e := newEnv(t, nil, name, "proxies: ['198.51.100.1:3128']\n")
	leaver, leave := startLeaver(t, ns)
	if _, err := e.create(leaver.state()); err != nil {
		t.Fatal(err)
	}
	leave()
	b, err := backend.New(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(nsOf(t, ns)); err != nil {
		t.Fatal(err)
	}
	newcomer := startIn(t, ns)
	if _, err := e.create(newcomer.state()); err != nil {
		t.Fatal(err)
	}
	recs := e.records()
	if len(recs) != 1 || recs[0].LogID != newcomer.id || !slices.Equal(ownerIDs(recs[0]), []string{newcomer.id}) {
		t.Errorf("records %v; want one, logged as and owned by the newcomer %s alone", recs, newcomer.id)
	}
	if ok, err := installed(b, nsOf(t, ns)); err != nil || !ok {
		t.Errorf("the newcomer is not fenced: %v, %v", ok, err)
	}
}
