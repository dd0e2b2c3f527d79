// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/euank/go-kmsg-parser/kmsgparser"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// fakeKmsg is a kernel log: Parse sends msgs and then, unless block, ends
// its channel the way kmsgparser does after a read error.
type fakeKmsg struct {
	msgs    []kmsgparser.Message
	block   bool
	seeked  bool
	closed  chan struct{}
	closeMu sync.Once
	log     kmsgparser.Logger
}

func newFakeKmsg(block bool, seqs ...int) *fakeKmsg {
	f := &fakeKmsg{block: block, closed: make(chan struct{})}
	for _, s := range seqs {
		f.msgs = append(f.msgs, kmsgparser.Message{SequenceNumber: s, Message: "line"})
	}
	return f
}

func (f *fakeKmsg) SeekEnd() error                { f.seeked = true; return nil }
func (f *fakeKmsg) SetLogger(l kmsgparser.Logger) { f.log = l }
func (f *fakeKmsg) Close() error                  { f.closeMu.Do(func() { close(f.closed) }); return nil }
func (f *fakeKmsg) Parse() <-chan kmsgparser.Message {
	ch := make(chan kmsgparser.Message)
	go func() {
		defer close(ch)
		for _, m := range f.msgs {
			select {
			case ch <- m:
			case <-f.closed:
				return
			}
		}
		if f.block {
			<-f.closed
			return
		}
		f.log.Errorf("error reading /dev/kmsg: %v", "read /dev/kmsg: broken pipe")
	}()
	return ch
}

// The kernel log reader survives kmsgparser giving up (as it does on the
// EPIPE of an overrun): it opens the log again, skips what it has seen,
// and counts the gap in sequence numbers as lost.
func TestKernelSourceReopens(t *testing.T) {
	logger, hook := test.NewNullLogger()
	first := newFakeKmsg(false, 10, 11, 12)
	// The reopened log starts at its oldest line: 8 to 12 were seen, 13 and
	// 14 were overwritten.
	second := newFakeKmsg(true, 8, 9, 10, 11, 12, 15, 16)
	opens := []*fakeKmsg{first, second}
	var mu sync.Mutex
	var seen []int
	lost := 0
	k := &kernelSource{
		open: func() (kmsgparser.Parser, error) {
			mu.Lock()
			defer mu.Unlock()
			if len(opens) == 0 {
				return nil, errors.New("no more")
			}
			p := opens[0]
			opens = opens[1:]
			return p, nil
		},
		handle: func(m kmsgparser.Message) { mu.Lock(); seen = append(seen, m.SequenceNumber); mu.Unlock() },
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
	if want := []int{10, 11, 12, 15, 16}; !slices.Equal(seen, want) {
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
		if e.Level == logrus.WarnLevel && e.Data["error"] == "read /dev/kmsg: broken pipe" {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning with kmsgparser's error; log: %v", hook.AllEntries())
	}
	select {
	case <-second.closed:
	default:
		t.Error("the kernel log was left open")
	}
}
