// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/internal/kmsg"
)

// KernelLog is the kernel log as the monitor reads it: *kmsg.Reader, or a
// stand-in for tests.
type KernelLog interface {
	SeekEnd() error
	Next() (kmsg.Record, error)
	Close() error
}

// openKernelLog opens /dev/kmsg.
func openKernelLog() (KernelLog, error) { return kmsg.Open() }

// kernelSource reads the kernel log (/dev/kmsg) from its end on, and
// hands each record to handle. Records the kernel overwrote before we read
// them show as a gap in the sequence numbers: counted as lost. Should the
// log fail to read, it is opened again from its oldest record, and what
// was seen is skipped by sequence number.
type kernelSource struct {
	open   func() (KernelLog, error)
	handle func(kmsg.Record)
	lost   func(n int) // lines the kernel overwrote before we read them
	log    logrus.FieldLogger
}

// start opens the kernel log at its end. It fails when the log cannot be
// read at all (no root, no CAP_SYSLOG), so the caller can say so at once.
func (k *kernelSource) start() (KernelLog, error) {
	l, err := k.open()
	if err != nil {
		return nil, err
	}
	if err := l.SeekEnd(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// run reads until ctx ends; l comes from start.
func (k *kernelSource) run(ctx context.Context, l KernelLog) {
	var last uint64 // sequence number of the last record handled
	seen := false
	backoff := 50 * time.Millisecond
	for {
		stop := context.AfterFunc(ctx, func() { l.Close() })
		var err error
		for {
			var rec kmsg.Record
			rec, err = l.Next()
			if errors.Is(err, kmsg.ErrMalformed) {
				k.log.WithError(err).Warn("a kernel log record that cannot be parsed")
				continue
			}
			if err != nil {
				break
			}
			backoff = 50 * time.Millisecond
			if seen && rec.Seq <= last {
				continue // seen before a reopen
			}
			if seen && rec.Seq > last+1 {
				k.lost(int(min(rec.Seq-last-1, 1<<31)))
			}
			last, seen = rec.Seq, true
			k.handle(rec)
		}
		stop()
		l.Close()
		if ctx.Err() != nil {
			return
		}
		k.log.WithField("error", err.Error()).Warn("the kernel log reader stopped; reading /dev/kmsg again from where it left off")
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			if l, err = k.open(); err == nil {
				break
			}
			k.log.WithError(err).Error("reopening the kernel log /dev/kmsg")
		}
	}
}
