// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/internal/kmsg"
)

// fakeKmsg is a kernel log: Next returns recs and then, unless block, an
// error as a failing read would.
type fakeKmsg struct {
	mu      sync.Mutex
	recs    []kmsg.Record
	block   bool
	seeked  bool
	closed  chan struct{}
	closeMu sync.Once
}

func newFakeKmsg(block bool, seqs ...uint64) *fakeKmsg {
	f := &fakeKmsg{block: block, closed: make(chan struct{})}
	for _, s := range seqs {
		f.recs = append(f.recs, kmsg.Record{Seq: s, Message: "line"})
	}
	return f
}

var errFakeRead = errors.New("read /dev/kmsg: input/output error")

func (f *fakeKmsg) SeekEnd() error { f.seeked = true; return nil }
func (f *fakeKmsg) Close() error   { f.closeMu.Do(func() { close(f.closed) }); return nil }
func (f *fakeKmsg) Next() (kmsg.Record, error) {
	f.mu.Lock()
	if len(f.recs) > 0 {
		r := f.recs[0]
		f.recs = f.recs[1:]
		f.mu.Unlock()
		return r, nil
	}
	f.mu.Unlock()
	select {
	case <-f.closed:
		return kmsg.Record{}, errors.New("closed")
	default:
	}
	if f.block {
		<-f.closed
		return kmsg.Record{}, errors.New("closed")
	}
	return kmsg.Record{}, errFakeRead
}

// The kernel log reader survives a failing read: it opens the log again,
// skips what it has seen, and counts the gap in sequence numbers as lost.
func TestKernelSourceReopens(t *testing.T) {
	logger, hook := test.NewNullLogger()
	first := newFakeKmsg(false, 10, 11, 12)
	// The reopened log starts at its oldest line: 8 to 12 were seen, 13 and
	// 14 were overwritten.
	second := newFakeKmsg(true, 8, 9, 10, 11, 12, 15, 16)
	opens := []*fakeKmsg{first, second}
	var mu sync.Mutex
	var seen []uint64
	lost := 0
	k := &kernelSource{
		open: func() (KernelLog, error) {
			mu.Lock()
			defer mu.Unlock()
			if len(opens) == 0 {
				return nil, errors.New("no more")
			}
			p := opens[0]
			opens = opens[1:]
			return p, nil
		},
		handle: func(r kmsg.Record) { mu.Lock(); seen = append(seen, r.Seq); mu.Unlock() },
		lost:   func(n int) { mu.Lock(); lost += n; mu.Unlock() },
		log:    logger,
	}
	p, err := k.start()
	if err != nil {
		t.Fatal(err)
	}
	if !first.seeked {
		t.Error("start did not seek to the end of the log")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.run(ctx, p); close(done) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []uint64{10, 11, 12, 15, 16}; !slices.Equal(seen, want) {
		t.Errorf("handled %v, want %v", seen, want)
	}
	if lost != 2 {
		t.Errorf("lost %d, want 2 (13 and 14)", lost)
	}
	if second.seeked {
		t.Error("the reopened log was moved to its end: lines since the failure would be missed")
	}
	var warned bool
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && e.Data["error"] == errFakeRead.Error() {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning with the read's error; log: %v", hook.AllEntries())
	}
	select {
	case <-second.closed:
	default:
		t.Error("the kernel log was left open")
	}
}
