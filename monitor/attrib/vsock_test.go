// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/monitor/attrib/attribtest"
)

// needVsock skips where the kernel has no AF_VSOCK.
func needVsock(t *testing.T) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		t.Skip("skipping: this kernel has no AF_VSOCK")
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
}

// TestReportsVsock: a program of a fenced namespace that sends on an
// AF_VSOCK socket, as nobody, and exits at once is reported with its pid
// and executable, once for its socket; one of a namespace not fenced is not.
func TestReportsVsock(t *testing.T) {
	needVsock(t)
	tr := loadTracer(t)
	if !tr.WatchesVsock() {
		t.Fatalf("AF_VSOCK sends are not watched on a kernel that has the tracepoint: %v", tr.Missing)
	}
	fenced, other := testnet.NewNetns(t), testnet.NewNetns(t)
	cookie, err := NetnsCookie(fenced.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Fence(cookie); err != nil {
		t.Fatal(err)
	}
	got := make(chan VsockSend, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.ReadVsock(ctx, func(v VsockSend) { got <- v }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ReadVsock: %v", err)
		}
	}()

	attribtest.NewProgram(t, "try-vsock-other").Run(t, other, "vsock", "2:9")
	pid := attribtest.NewProgram(t, "try-vsock").Run(t, fenced, "vsock", "2:9")
	select {
	case v := <-got:
		if v.Netns != cookie || v.CID != 2 || v.Port != 9 {
			t.Errorf("reported %+v; want namespace %d, CID 2, port 9", v, cookie)
		}
		checkProcess(t, v.Process, pid, "try-vsock")
	case <-time.After(2 * time.Second):
		t.Fatal("no AF_VSOCK send reported within 2s")
	}
	select {
	case v := <-got:
		t.Errorf("reported again, or of a namespace not fenced: %+v", v)
	case <-time.After(300 * time.Millisecond):
	}
}

func FuzzDecodeVsock(f *testing.F) {
	f.Add(make([]byte, binary.Size(attribVsockEvent{})))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVsock(b)
		if err != nil {
			if len(b) >= binary.Size(attribVsockEvent{}) {
				t.Errorf("a record of %d bytes refused: %v", len(b), err)
			}
			return
		}
		var e attribVsockEvent
		binary.Read(bytes.NewReader(b), binary.NativeEndian, &e)
		if v.CID != e.Cid || v.Port != e.Port || v.Netns != e.Netns || v.Process.Pid != e.Who.Pid {
			t.Errorf("decoded %+v from %x", v, b)
		}
	})
}
