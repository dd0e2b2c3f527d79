// SPDX-License-Identifier: Apache-2.0

// Package kmsg reads the kernel log, /dev/kmsg, one record at a time.
//
// Each read of /dev/kmsg returns one record (Documentation/ABI/testing/
// dev-kmsg): "PRIORITY,SEQUENCE,MICROSECONDS,FLAGS[,MORE];MESSAGE\n",
// followed by continuation lines " KEY=VALUE\n". The message escapes
// unprintable bytes as \xNN. A reader that falls behind gets EPIPE once
// and then the oldest record still kept: the gap in sequence numbers is
// what was lost.
package kmsg

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrMalformed is in the error of a record that cannot be parsed.
var ErrMalformed = errors.New("kmsg: malformed record")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

// Record is one kernel log record.
type Record struct {
	Priority int // syslog priority and facility, as the kernel gives them
	Seq      uint64
	// SinceBoot is when the kernel logged it, on the monotonic clock.
	SinceBoot time.Duration
	Message   string // the text, without the trailing newline and the continuation lines
}

// Parse reads one record as a read of /dev/kmsg returns it.
func Parse(b []byte) (Record, error) {
	head, msg, ok := bytes.Cut(b, []byte{';'})
	if !ok {
		return Record{}, malformed("no ';' after the header")
	}
	fields := bytes.Split(head, []byte{','})
	if len(fields) < 4 {
		return Record{}, malformed("a header of %d fields, want at least 4", len(fields))
	}
	prio, err := strconv.Atoi(string(fields[0]))
	if err != nil || prio < 0 {
		return Record{}, malformed("priority %q", fields[0])
	}
	seq, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return Record{}, malformed("sequence number %q", fields[1])
	}
	usec, err := strconv.ParseUint(string(fields[2]), 10, 63)
	if err != nil || usec > uint64(1<<63-1)/uint64(time.Microsecond) {
		return Record{}, malformed("timestamp %q", fields[2])
	}
	// The message ends at the first newline; continuation lines follow.
	msg, _, _ = bytes.Cut(msg, []byte{'\n'})
	return Record{Priority: prio, Seq: seq, SinceBoot: time.Duration(usec) * time.Microsecond, Message: string(msg)}, nil
}

// maxRecord is the most one read returns (the kernel's CONSOLE_EXT_LOG_MAX
// is 8 KiB); a smaller buffer gets EINVAL.
const maxRecord = 16 << 10

// Reader reads /dev/kmsg. Close ends a Next that waits.
type Reader struct {
	f   *os.File
	buf []byte
}

// Open opens the kernel log at its oldest record. It needs CAP_SYSLOG
// where dmesg_restrict is set.
func Open() (*Reader, error) {
	// Non-blocking, so that the runtime's poller waits for records and
	// Close ends that wait.
	f, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	return &Reader{f: f, buf: make([]byte, maxRecord)}, nil
}

// SeekEnd moves past every record logged so far.
func (r *Reader) SeekEnd() error {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { _, serr = unix.Seek(int(fd), 0, unix.SEEK_END) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("seeking to the end of /dev/kmsg: %w", serr)
	}
	return nil
}

// Next waits for the next record. Records the kernel overwrote before they
// were read are skipped (the caller sees the gap in Seq); a record that
// cannot be parsed is returned as an error, and the next call goes on.
func (r *Reader) Next() (Record, error) {
	for {
		n, err := r.f.Read(r.buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // overwritten: the next read returns the oldest kept
		}
		if err != nil {
			return Record{}, err
		}
		return Parse(r.buf[:n])
	}
}

// Close closes the log.
func (r *Reader) Close() error { return r.f.Close() }
