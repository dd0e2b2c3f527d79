// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// VsockSend is a send on an AF_VSOCK socket of a fenced namespace: the
// socket family goes past the network namespace and its fence, to the host
// (CID 2) or a VM, and netfilter never sees it. The programs report one a
// socket.
type VsockSend struct {
	Netns   uint64 // the namespace's cookie
	CID     uint32 // the peer's context id
	Port    uint32
	Ret     int32 // what the send returned: bytes sent, or -errno
	Process Process
}

// watchVsock attaches the AF_VSOCK program and opens its ring buffer.
func (t *Tracer) watchVsock() error {
	l, err := link.AttachTracing(link.TracingOptions{Program: t.objs.VsockSend})
	if err != nil {
		return err
	}
	rd, err := ringbuf.NewReader(t.objs.VsockSends)
	if err != nil {
		l.Close()
		return err
	}
	t.links = append(t.links, l)
	t.vsock = rd
	return nil
}

// WatchesVsock is whether AF_VSOCK sends are reported on this kernel.
func (t *Tracer) WatchesVsock() bool { return t.vsock != nil }

// ReadVsock calls fn with every AF_VSOCK send reported, until ctx ends;
// it returns at once where they are not reported. Only one may run.
func (t *Tracer) ReadVsock(ctx context.Context, fn func(VsockSend)) error {
	if t.vsock == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { t.vsock.Close() })
	defer stop()
	for {
		rec, err := t.vsock.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := decodeVsock(rec.RawSample)
		if err != nil {
			return err
		}
		fn(v)
	}
}

// decodeVsock reads a record of the ring buffer.
func decodeVsock(b []byte) (VsockSend, error) {
	var e attribVsockEvent
	if len(b) < binary.Size(e) {
		return VsockSend{}, fmt.Errorf("an AF_VSOCK record of %d bytes, want %d", len(b), binary.Size(e))
	}
	if err := binary.Read(bytes.NewReader(b), binary.NativeEndian, &e); err != nil {
		return VsockSend{}, err
	}
	return VsockSend{Netns: e.Netns, CID: e.Cid, Port: e.Port, Ret: e.Ret, Process: processOf(e.Who)}, nil
}
