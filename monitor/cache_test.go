// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// A resync takes an unchanged record as it was read before (from the
// store's cache, once its file has settled), and reads a changed one
// again.
func TestResyncReadsChangedRecordsOnly(t *testing.T) {
	m, store, _ := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	t.Cleanup(m.shutdown)
	rec := testrecord.New(5001, idA, config.ModeEnforce, config.LogKernel, idA)
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	key := rec.Netns.Key()
	time.Sleep(records.Settled + 100*time.Millisecond) // a file just written is not cached
	held := func() *records.Record {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.fences[key].rec
	}
	ctx := context.Background()
	m.resync(ctx)
	first := held()
	m.resync(ctx)
	if held() != first {
		t.Error("a resync read again a record that did not change")
	}
	rec.Owners = append(rec.Owners, records.Owner{ID: "second", Pid: -1})
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	m.resync(ctx)
	if got := held(); got == first || len(got.Owners) != 2 {
		t.Errorf("after the record changed the monitor holds %+v, want it read again with 2 owners", got.Owners)
	}
}
