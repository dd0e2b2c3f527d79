// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/euank/go-kmsg-parser/kmsgparser"
	"github.com/sirupsen/logrus"
)

// kernelSource reads the kernel log (/dev/kmsg) from its end on, and
// hands each message to handle.
//
// kmsgparser stops reading at the first read error, including the EPIPE
// with which /dev/kmsg says that unread lines were overwritten (it compares
// the error with == and Go wraps it). So when its channel closes while we
// still run, we open the log again from its start and skip what we have
// seen by sequence number; a gap in the sequence counts as lost lines.
type kernelSource struct {
	open   func() (kmsgparser.Parser, error)
	handle func(kmsgparser.Message)
	lost   func(n int) // lines the kernel overwrote before we read them
	log    logrus.FieldLogger
}

// kmsgLogger passes kmsgparser's messages to our log, keeping its last
// error to say why it stopped.
type kmsgLogger struct {
	log  logrus.FieldLogger
	mu   sync.Mutex
	last string
}

func (l *kmsgLogger) Infof(f string, a ...any)    { l.log.Debugf("kmsgparser: "+f, a...) }
func (l *kmsgLogger) Warningf(f string, a ...any) { l.log.Warnf("kmsgparser: "+f, a...) }
func (l *kmsgLogger) Errorf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(f, a...), "error reading /dev/kmsg: "))
}

func (l *kmsgLogger) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// start opens the kernel log at its end. It fails when the log cannot be
// read at all (no root, no CAP_SYSLOG), so the caller can say so at once.
func (k *kernelSource) start() (kmsgparser.Parser, error) {
	p, err := k.open()
	if err != nil {
		return nil, err
	}
	if err := p.SeekEnd(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// run reads until ctx ends; p comes from start.
func (k *kernelSource) run(ctx context.Context, p kmsgparser.Parser) {
	last := -1 // sequence number of the last message handled
	backoff := 50 * time.Millisecond
	for {
		kl := &kmsgLogger{log: k.log}
		p.SetLogger(kl)
		msgs := p.Parse()
		stop := context.AfterFunc(ctx, func() { p.Close() })
		for m := range msgs {
			if m.SequenceNumber <= last {
				continue // seen before a reopen
			}
			if last >= 0 && m.SequenceNumber > last+1 {
				k.lost(m.SequenceNumber - last - 1)
			}
			last = m.SequenceNumber
			k.handle(m)
			backoff = 50 * time.Millisecond
		}
		stop()
		p.Close()
		if ctx.Err() != nil {
			return
		}
		k.log.WithField("error", kl.lastError()).Warn("the kernel log reader stopped; reading /dev/kmsg again from where it left off")
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			var err error
			if p, err = k.open(); err == nil {
				break
			}
			k.log.WithError(err).Error("reopening the kernel log /dev/kmsg")
		}
	}
}
