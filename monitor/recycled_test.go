// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// The kernel gives the inode number of a freed network namespace to the
// next one made. A container that died before its poststop leaves a
// record whose number may lead to another namespace by the time the
// monitor checks the fence; that namespace has no such fence, and the
// monitor reported the fence as not whole: a second event of the
// container, which the churn counted as doubled (TestMonitorChurn,
// iptables/kernel, about one run in ten here while other namespaces came
// and went). The file handle names the record's namespace, which is
// gone: nothing is reported.
func TestMonitorLeavesARecycledNumberAlone(t *testing.T) {
	testnet.RequireRoot(t)
	// The namespace the record was made for, gone as its container died.
	gone := newSleeper(t, "")
	ns, closeNs, err := netns.Open(gone.nsPath)
	if err != nil {
		t.Fatal(err)
	}
	goneHandle := netns.FileHandle(ns)
	goneID := ns.ID
	closeNs()
	if goneHandle == "" {
		t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
	}
	gone.kill()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if exists, known := netns.Exists(goneID, goneHandle); known && !exists {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed sleeper's namespace is still there after a minute: the case is not made")
		}
	}
	// The namespace that has the number now: here another namespace's
	// number is given to the record, which comes to the same.
	other := testnet.NewNetns(t)
	otherID, err := netns.Stat(other.Path)
	if err != nil {
		t.Fatal(err)
	}

	fake := &fakeBackend{} // sees no fence in any namespace
	m, store, out := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	m.opts.NewBackend = func(string) (backend.Backend, error) { return fake, nil }
	t.Cleanup(m.shutdown)
	rec := testrecord.New(0, idA, config.ModeEnforce, config.LogKernel, idA)
	rec.Netns, rec.NsHandle, rec.Paths = otherID, goneHandle, []string{gone.nsPath}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	m.resync(context.Background())
	for _, ev := range out.events(t) {
		if ev.Action == ActionNotWhole {
			t.Errorf("the fence of a gone namespace was reported not whole from the namespace that has its number now: %+v", ev)
		}
	}
}
