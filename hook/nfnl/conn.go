// SPDX-License-Identifier: Apache-2.0

// Package nfnl is the nf_tables netlink transport the backends share: a
// socket made in one network namespace, batches the kernel applies whole
// (with their acknowledgements and the echoes of the rules they made),
// dumps, and the parsers of the few messages the backends read back
// (tables, chains, rules). It knows nothing of bypass-hook's fence.
//
// It relies on how the kernel answers on a netlink socket (net/netfilter/
// nfnetlink.c), and TestReplyOrder checks each point on the running kernel:
//   - a batch is processed before sendmsg returns, so all of its answers are
//     queued by the time Transact reads them;
//   - the echoes come first, in the order of the rules (the commit sends
//     them), then the acknowledgements, in the order of the messages: the
//     acknowledgement of the last message is the last answer;
//   - a commit that fails after every message passed is answered with an
//     error on the first message's sequence number, before that message's
//     own acknowledgement;
//   - a dump's messages carry the request's sequence number and end with
//     NLMSG_DONE.
package nfnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// Conn is a plain netlink socket to nf_tables, made in one network
// namespace. It is not the library's connection, which asks for an
// acknowledgement and an echo of every message of a batch, reads them one
// at a time through the runtime's poller, and takes a socket (and a thread
// that joins the namespace) per request.
//
// A transaction asks for two acknowledgements, of its first and last
// messages, and for the echoes its messages ask for. The kernel reports a
// failing message whatever its flags.
type Conn struct {
	fd     int
	seq    uint32
	buf    []byte
	rcvbuf int // the receive buffer the kernel gave the socket, in bytes
}

// Msg is one nf_tables request: its type (NFT_MSG_*), netlink flags, the
// family it acts on, its attributes, and what it is, for error messages.
type Msg struct {
	Type   uint16
	Flags  uint16
	Family byte
	Attrs  []byte
	What   string
}

// ErrBatchRefused: the kernel refused the batch as a whole, before any of
// its messages (no nf_tables subsystem, or a commit that failed).
var ErrBatchRefused = errors.New("the kernel refused the nf_tables batch")

// NotSupported tells the errors of a kernel without nf_tables (in this
// namespace): no netlink family, no subsystem, or a request it does not know.
func NotSupported(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) ||
		errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

// Open makes a netlink socket to nf_tables in the network namespace at
// path. The error of making the socket is returned as it is, for the caller
// to say what to do about it.
func Open(path string) (*Conn, error) {
	fd, err := netns.Socket(path, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	// Room for the echoes of a large rule set: an answer the kernel cannot
	// queue is lost, and a transaction whose answer is lost cannot tell
	// whether it was applied. The kernel answers before sendmsg returns, so
	// the timeout only bounds a wait for an answer that never comes.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20) // up to net.core.rmem_max
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	// An error answer then carries the kernel's reason as text, and only
	// the header of the message it is for.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding a netlink socket in %s: %w", path, err)
	}
	rcvbuf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		rcvbuf = 0 // then nothing is echoed
	}
	return &Conn{fd: fd, seq: uint32(time.Now().UnixNano()), buf: *recvBufs.Get().(*[]byte), rcvbuf: rcvbuf}, nil
}

// recvBufs keeps receive buffers from one connection to the next: the
// monitor opens one in each fence's namespace at every resync, mostly for
// an answer of a few bytes (Generation), and a new buffer each time was
// most of the garbage it made. Nothing read keeps a part of the buffer:
// every answer is copied out before the next read.
var recvBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// Echoes: an echo the kernel cannot queue on the socket is dropped with the
// rest of the batch's answer, and the caller could not tell whether its
// batch went in. A rule's echo takes its message and the kernel's overhead
// of the receive buffer, so a rule set is echoed only where EchoBytesPerRule
// a rule fit, and never beyond MaxEchoedRules; otherwise it is read back.
// docs/bench.md has the measured sizes.
const (
	EchoBytesPerRule = 2 << 10
	MaxEchoedRules   = 1024
)

// EchoFits tells whether the echoes of n rules fit the socket's receive
// buffer.
func (c *Conn) EchoFits(n int) bool {
	return n <= MaxEchoedRules && n*EchoBytesPerRule <= c.rcvbuf
}

// Close closes the socket.
func (c *Conn) Close() {
	unix.Close(c.fd)
	if b := c.buf; b != nil {
		c.buf = nil
		recvBufs.Put(&b)
	}
}

// appendMsg appends one netlink message with its nfgenmsg header.
func (c *Conn) appendMsg(b []byte, typ, flags uint16, fam byte, resID uint16, attrs []byte) ([]byte, uint32) {
	c.seq++
	var h [20]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(len(h)+len(attrs)))
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], c.seq)
	// h[12:16], the port id: 0 lets the kernel fill in the socket's.
	h[16] = fam
	h[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(h[18:], resID)
	return append(append(b, h[:]...), attrs...), c.seq
}

// Type is the netlink message type of an nf_tables message NFT_MSG_*.
func Type(msg uint16) uint16 { return unix.NFNL_SUBSYS_NFTABLES<<8 | msg }

// batch renders msgs as one batch; ack(i) says which messages ask for an
// acknowledgement. It returns the sequence numbers of the first and last
// messages.
func (c *Conn) batch(msgs []Msg, ack func(i int) bool) (b []byte, first, last uint32) {
	b, first = c.appendMsg(nil, unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)
	for i, m := range msgs {
		flags := unix.NLM_F_REQUEST | m.Flags
		if ack(i) {
			flags |= unix.NLM_F_ACK
		}
		b, last = c.appendMsg(b, Type(m.Type), uint16(flags), m.Family, 0, m.Attrs)
	}
	b, _ = c.appendMsg(b, unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)
	return b, first, last
}

func (c *Conn) send(b []byte) error {
	return unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// Transact sends msgs as one batch, which the kernel applies whole or not
// at all, and returns the echoes of the rules it made (their nfgenmsg and
// attributes), in the order of msgs. The error is that of the first message
// that failed, or ErrBatchRefused.
func (c *Conn) Transact(msgs []Msg) ([][]byte, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	// The last message is acknowledged: its answer is the last of the
	// batch's. So is the first: a failed commit is answered on the first
	// message's sequence number too, before its own acknowledgement, and
	// that is how it is told from the first message's own error.
	b, first, last := c.batch(msgs, func(i int) bool { return i == 0 || i == len(msgs)-1 })
	if err := c.send(b); err != nil {
		return nil, fmt.Errorf("sending the nf_tables batch: %w", err)
	}

	var echoes [][]byte
	var failed error
	var firstErr syscall.Errno // the first answer on the first message's number, an error
	for {
		flags := 0
		if failed != nil {
			flags = unix.MSG_DONTWAIT // every answer is queued already
		}
		replies, err := c.recv(flags)
		switch {
		case err != nil && failed != nil:
			return nil, failed
		case err != nil:
			return nil, fmt.Errorf("reading the kernel's answer to the nf_tables batch: %w", err)
		}
		for _, m := range replies {
			off := m.Header.Seq - first
			if off > uint32(len(msgs))+1 {
				continue // an answer to an earlier batch on this socket
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				errno := Errno(m.Data)
				switch {
				case off == 1 && errno == 0 && firstErr != 0:
					// The first message went through: the error on its
					// number was the commit's.
					failed = fmt.Errorf("%w: the commit failed: %w", ErrBatchRefused, firstErr)
				case errno == 0 || failed != nil:
				case off >= 1 && off <= uint32(len(msgs)):
					if off == 1 {
						firstErr = errno
					}
					failed = fmt.Errorf("%s: %w%s", msgs[off-1].What, errno, ExtAckMsg(m))
				default:
					failed = fmt.Errorf("%w: %w%s", ErrBatchRefused, errno, ExtAckMsg(m))
				}
				if m.Header.Seq == last {
					return echoes, failed
				}
			case Type(unix.NFT_MSG_NEWRULE):
				// The next read overwrites the buffer the message is in.
				echoes = append(echoes, append([]byte(nil), m.Data...))
			}
		}
	}
}

// Dump sends one dump request and returns the payloads (nfgenmsg and
// attributes) of the messages of its answer. A dump that a change in the
// kernel interrupted is asked for again.
func (c *Conn) Dump(typ uint16, fam byte, attrs []byte) ([][]byte, error) {
	var out [][]byte
	err := c.DumpEach(typ, fam, attrs, func() { out = nil }, func(payload []byte) error {
		// The next read overwrites the buffer the message is in.
		out = append(out, append([]byte(nil), payload...))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DumpEach is Dump for a reader that keeps nothing of a message but what
// it takes out of it: each gets each message's payload where it was
// received, valid until each returns, and no copy is made (a status over
// a thousand fences copied some 40 MB of rules otherwise). start is called
// before each try: a dump that a change interrupted is read again from
// the beginning, and what each took of it must be dropped. An error of
// each ends the dump (its answer is still read to the end) and is
// returned.
func (c *Conn) DumpEach(typ uint16, fam byte, attrs []byte, start func(), each func(payload []byte) error) error {
	for try := 0; ; try++ {
		start()
		intr, err := c.dumpOnce(typ, fam, attrs, each)
		if err != nil || !intr {
			return err
		}
		if try == 3 {
			return errors.New("the dump was interrupted by changes four times over; try again")
		}
	}
}

func (c *Conn) dumpOnce(typ uint16, fam byte, attrs []byte, each func(payload []byte) error) (intr bool, err error) {
	b, seq := c.appendMsg(nil, Type(typ), unix.NLM_F_REQUEST|unix.NLM_F_DUMP, fam, 0, attrs)
	if err := c.send(b); err != nil {
		return false, err
	}
	var failed error // each's, once it failed: the rest is read and dropped
	for {
		replies, err := c.recv(0)
		if err != nil {
			return false, err
		}
		for _, m := range replies {
			if m.Header.Seq != seq {
				continue
			}
			intr = intr || m.Header.Flags&unix.NLM_F_DUMP_INTR != 0
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if failed != nil && !intr {
					return false, failed
				}
				return intr, nil // read again when interrupted, as Dump's caller would
			case unix.NLMSG_ERROR:
				if errno := Errno(m.Data); errno != 0 {
					return false, errno
				}
			default:
				if failed == nil {
					failed = each(m.Data)
				}
			}
		}
	}
}

// recv reads one datagram of answers.
func (c *Conn) recv(flags int) ([]syscall.NetlinkMessage, error) {
	for {
		n, from, err := unix.Recvfrom(c.fd, c.buf, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		return syscall.ParseNetlinkMessage(c.buf[:n])
	}
}

// TableFlags dumps the family's tables and returns the flags of the one
// named; found is false when there is none.
func (c *Conn) TableFlags(fam byte, name string) (flags uint32, found bool, err error) {
	tables, err := c.Dump(unix.NFT_MSG_GETTABLE, fam, nil)
	if err != nil {
		return 0, false, err
	}
	for _, m := range tables {
		t, err := ParseTable(m)
		if err != nil {
			return 0, false, err
		}
		if t.Name == name {
			return t.Flags, true, nil
		}
	}
	return 0, false, nil
}

// ChainRules dumps the rules of one chain of a table.
func (c *Conn) ChainRules(fam byte, table, chain string) ([]Rule, error) {
	msgs, err := c.Dump(unix.NFT_MSG_GETRULE, fam, Attrs(
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: Cstring(table)},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: Cstring(chain)},
	))
	if err != nil {
		return nil, err
	}
	out := make([]Rule, len(msgs))
	for i, m := range msgs {
		if out[i], err = ParseRule(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Cstring is s as a netlink string attribute holds it, NUL-terminated.
func Cstring(s string) []byte { return append([]byte(s), 0) }

// Attrs encodes attributes whose sizes are known to fit (each under 64 KB).
func Attrs(attrs ...netlink.Attribute) []byte {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic(err)
	}
	return b
}
