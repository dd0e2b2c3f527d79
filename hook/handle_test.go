// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/status"
)

// A fenced namespace that only a thread holds, other than its process's
// first (a container's pid 1 left it with `unshare --net` while a worker
// thread stayed), is reached by no path: status reads its fence and apply
// replaces it all the same, through the namespace's file handle. On main,
// apply said "namespace gone" and left the old fence, and status said the
// namespace was gone. Once the thread ends, apply says it is gone.
func TestReachesANamespaceOnlyAThreadHolds(t *testing.T) {
	testnet.RequireRoot(t)
	for _, b := range backends(t) {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, nil, b, "proxies: [198.51.100.1:3128]\n")
			c := startUnshared(t)
			if _, err := e.create(c.state()); err != nil {
				t.Fatal(err)
			}
			recs := e.records()
			if len(recs) != 1 {
				t.Fatalf("%d records after one create", len(recs))
			}
			rec := recs[0]
			if rec.NsHandle == "" {
				t.Skip("skipping: the kernel gives no file handle for a namespace (Linux 6.18 and later do)")
			}
			release := testnet.HoldInThread(t, netns.PidPath(c.pid()))
			c.kill()
			if _, found := netns.Find(rec.Netns, rec.Hints()...); found {
				t.Fatal("a path still reaches the namespace: the case is not made")
			}
			if ok, known := netns.Exists(rec.Netns, rec.NsHandle); !ok || !known {
				t.Fatalf("held by a thread: Exists = %v, %v", ok, known)
			}

			readStatus := func(when string) status.FenceStatus {
				t.Helper()
				store, err := records.Open(e.cfg.StateDir)
				if err != nil {
					t.Fatal(err)
				}
				fences, err := status.Read(store, "", backend.New)
				if err != nil || len(fences) != 1 {
					t.Fatalf("%s: status.Read = %d fences, %v", when, len(fences), err)
				}
				f := fences[0]
				if f.Error != "" || f.Totals == nil || f.Whole == nil || !*f.Whole {
					t.Errorf("%s: status of a fence only a thread holds: error %q, totals %v, whole %v (%s)", when, f.Error, f.Totals, f.Whole, f.NotWhole)
				}
				if f.NetnsPath != "" {
					t.Errorf("%s: status names the path %q, which is status's own descriptor", when, f.NetnsPath)
				}
				return f
			}
			readStatus("before apply")

			allowed := newEnv(t, nil, b, "proxies: [198.51.100.1:3128]\nallow: [{cidr: 198.51.100.9/32, ports: [80], protocol: tcp}]\n")
			allowed.cfg.StateDir, allowed.log = e.cfg.StateDir, e.log
			a := applyAll(t, allowed)[rec.Netns.String()]
			if a.Action != hook.AppliedReplaced || a.Error != "" || a.NewDigest == a.OldDigest {
				t.Errorf("apply with an allow entry added, to a namespace only a thread holds: %+v", a)
			}
			if recs := allowed.records(); len(recs) != 1 || len(recs[0].Policy.Allow) != 1 {
				t.Errorf("record after apply: %+v", recs)
			}
			// Whole against the new record: the rules in the namespace are
			// the new config's.
			readStatus("after apply")

			release()
			// The thread's end frees the namespace after an RCU grace period.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if ok, known := netns.Exists(rec.Netns, rec.NsHandle); !ok && known {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("10 s after its last thread left, the namespace still opens by its handle")
				}
			}
			a = applyAll(t, e)[rec.Netns.String()]
			if a.Action != hook.AppliedGone {
				t.Errorf("apply once the namespace is gone: %+v", a)
			}
		})
	}
}
