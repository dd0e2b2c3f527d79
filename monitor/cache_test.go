// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// A resync takes an unchanged record as it was read before (from the
// store's cache, once its file has settled), and passes over its fence
// (the same fence is kept, nothing is made again for it); it reads a
// changed one again.
func TestResyncReadsChangedRecordsOnly(t *testing.T) {
	m, store, _ := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	t.Cleanup(m.shutdown)
	rec := testrecord.New(5001, idA, config.ModeEnforce, config.LogKernel, idA)
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	key := rec.Netns.Key()
	time.Sleep(records.Settled + 100*time.Millisecond) // a file just written is not cached
	fenceOf := func() *fence {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.fences[key]
	}
	held := func() *records.Record { return fenceOf().rec }
	ctx := context.Background()
	m.resync(ctx)
	first, firstFence := held(), fenceOf()
	m.resync(ctx)
	if held() != first {
		t.Error("a resync read again a record that did not change")
	}
	if fenceOf() != firstFence {
		t.Error("a resync made the fence of an unchanged record again")
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

// What failed for a fence is tried again at the next resync though its
// record did not change: here the first reading of its counters (the
// kernel log's credit).
func TestResyncRetriesUnchangedFence(t *testing.T) {
	m, store, _ := newTestMonitor(t, config.LogKernel, newFakeKmsg(true))
	t.Cleanup(m.shutdown)
	var reads int
	m.opts.LoggedCount = func(*records.Record) (map[string]uint64, error) {
		reads++
		if reads == 1 {
			return nil, errors.New("not now")
		}
		return map[string]uint64{}, nil
	}
	rec := testrecord.New(5001, idA, config.ModeEnforce, config.LogKernel, idA)
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(records.Settled + 100*time.Millisecond)
	primed := func() bool {
		m.mu.Lock()
		c := m.fences[rec.Netns.Key()].credit
		m.mu.Unlock()
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.primed
	}
	ctx := context.Background()
	m.resync(ctx)
	if primed() {
		t.Fatal("the credit is primed though its first reading failed")
	}
	m.resync(ctx)
	if !primed() || reads != 2 {
		t.Errorf("after a second resync: primed %v after %d readings; want primed, 2", primed(), reads)
	}
}
