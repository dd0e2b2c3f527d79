// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// nfSock is a plain netlink socket to nf_tables, made in one network
// namespace. The nftables backend's create path uses it rather than the
// library's connection, which asks for an acknowledgement and an echo of
// every message of a batch, reads them one at a time through the runtime's
// poller, and takes a socket (and a thread that joins the namespace) per
// request: on a container's start that was most of the hook's own work.
//
// A transaction here asks for two acknowledgements, of its first and last
// messages, and for the echo of each rule: the rule as the kernel stored
// it, which is what the fence's digest is taken from. The kernel reports a failing message
// whatever its flags, and answers a whole batch before sendmsg returns, so
// the answers are read from a queue that is already full.
type nfSock struct {
	fd     int
	seq    uint32
	buf    []byte
	rcvbuf int // the receive buffer the kernel gave the socket, in bytes
}

// nfMsg is one nf_tables request: its type (NFT_MSG_*), netlink flags, the
// family it acts on, its attributes, and what it is, for error messages.
type nfMsg struct {
	typ   uint16
	flags uint16
	fam   byte
	attrs []byte
	what  string
}

// errBatchRefused: the kernel refused the batch as a whole, before any of
// its messages (no nf_tables subsystem, or a commit that failed).
var errBatchRefused = errors.New("the kernel refused the nf_tables batch")

func openNfSock(path string) (*nfSock, error) {
	fd, err := netns.Socket(path, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket to nf_tables in %s: %w", path, nftErr(err))
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
	return &nfSock{fd: fd, seq: uint32(time.Now().UnixNano()), buf: make([]byte, 64<<10), rcvbuf: rcvbuf}, nil
}

// Echoes: an echo the kernel cannot queue on the socket is dropped with
// the rest of the batch's answer, and the hook could not tell whether its
// fence went in. A rule's echo takes about 1.3 KB of the receive buffer
// (its message and the kernel's overhead; 149 rules fit the usual default
// of 208 KB, 169 did not), so a rule set is echoed only where 2 KB a rule
// fit, and never beyond maxEchoedRules; otherwise it is read back.
const (
	echoBytesPerRule = 2 << 10
	maxEchoedRules   = 1024
)

// echoFits tells whether the echoes of n rules fit the socket's receive
// buffer.
func (s *nfSock) echoFits(n int) bool {
	return n <= maxEchoedRules && n*echoBytesPerRule <= s.rcvbuf
}

func (s *nfSock) close() { unix.Close(s.fd) }

// appendMsg appends one netlink message with its nfgenmsg header.
func (s *nfSock) appendMsg(b []byte, typ, flags uint16, fam byte, resID uint16, attrs []byte) ([]byte, uint32) {
	s.seq++
	var h [20]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(len(h)+len(attrs)))
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], s.seq)
	// h[12:16], the port id: 0 lets the kernel fill in the socket's.
	h[16] = fam
	h[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(h[18:], resID)
	return append(append(b, h[:]...), attrs...), s.seq
}

func nftType(msg uint16) uint16 { return unix.NFNL_SUBSYS_NFTABLES<<8 | msg }

// transact sends msgs as one batch, which the kernel applies whole or not
// at all, and returns the echoes of the rules it made (their nfgenmsg and
// attributes). The first error is that of the first message that failed.
func (s *nfSock) transact(msgs []nfMsg) ([][]byte, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	b, first := s.appendMsg(nil, unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)
	// The last message is acknowledged: its answer is the last of the
	// batch's. So is the first: a failed commit is answered on the first
	// message's sequence number too, before its own acknowledgement, and
	// that is how it is told from the first message's own error.
	var last uint32
	for i, m := range msgs {
		flags := unix.NLM_F_REQUEST | m.flags
		if i == 0 || i == len(msgs)-1 {
			flags |= unix.NLM_F_ACK
		}
		b, last = s.appendMsg(b, nftType(m.typ), uint16(flags), m.fam, 0, m.attrs)
	}
	b, _ = s.appendMsg(b, unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)
	if err := unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
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
		replies, err := s.recv(flags)
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
				errno := nlErrno(m.Data)
				switch {
				case off == 1 && errno == 0 && firstErr != 0:
					// The first message went through: the error on its
					// number was the commit's.
					failed = fmt.Errorf("%w: the commit failed: %w", errBatchRefused, firstErr)
				case errno == 0 || failed != nil:
				case off >= 1 && off <= uint32(len(msgs)):
					if off == 1 {
						firstErr = errno
					}
					failed = fmt.Errorf("%s: %w%s", msgs[off-1].what, errno, extAckMsg(m))
				default:
					failed = fmt.Errorf("%w: %w%s", errBatchRefused, errno, extAckMsg(m))
				}
				if m.Header.Seq == last {
					return echoes, failed
				}
			case nftType(unix.NFT_MSG_NEWRULE):
				// The next read overwrites the buffer the message is in.
				echoes = append(echoes, append([]byte(nil), m.Data...))
			}
		}
	}
}

// dump sends one dump request and returns the payloads (nfgenmsg and
// attributes) of the messages of its answer. A dump that a change in the
// kernel interrupted is asked for again.
func (s *nfSock) dump(typ uint16, fam byte, attrs []byte) ([][]byte, error) {
	for try := 0; ; try++ {
		msgs, intr, err := s.dumpOnce(typ, fam, attrs)
		if err != nil || !intr {
			return msgs, err
		}
		if try == 3 {
			return nil, errors.New("the dump was interrupted by changes four times over; try again")
		}
	}
}

func (s *nfSock) dumpOnce(typ uint16, fam byte, attrs []byte) (payloads [][]byte, intr bool, err error) {
	b, seq := s.appendMsg(nil, nftType(typ), unix.NLM_F_REQUEST|unix.NLM_F_DUMP, fam, 0, attrs)
	if err := unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, false, err
	}
	var out [][]byte
	for {
		replies, err := s.recv(0)
		if err != nil {
			return nil, false, err
		}
		for _, m := range replies {
			if m.Header.Seq != seq {
				continue
			}
			intr = intr || m.Header.Flags&unix.NLM_F_DUMP_INTR != 0
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, intr, nil
			case unix.NLMSG_ERROR:
				if errno := nlErrno(m.Data); errno != 0 {
					return nil, false, errno
				}
			default:
				// The next read overwrites the buffer the message is in.
				out = append(out, append([]byte(nil), m.Data...))
			}
		}
	}
}

// recv reads one datagram of answers.
func (s *nfSock) recv(flags int) ([]syscall.NetlinkMessage, error) {
	for {
		n, from, err := unix.Recvfrom(s.fd, s.buf, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		return syscall.ParseNetlinkMessage(s.buf[:n])
	}
}

// extAckMsg is the kernel's reason in an error answer, when it gave one.
func extAckMsg(m syscall.NetlinkMessage) string {
	// The error code, then the header of the message it answers (its
	// payload left out: NETLINK_CAP_ACK), then the reason's attributes.
	const skip = 4 + unix.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(m.Data) < skip {
		return ""
	}
	var msg string
	_ = nlAttrs(m.Data[skip:], func(typ uint16, data []byte) error {
		if typ == unix.NLMSGERR_ATTR_MSG {
			msg = " (" + nlString(data) + ")"
		}
		return nil
	})
	return msg
}

// nlErrno reads the error code of an NLMSG_ERROR message: 0 is an
// acknowledgement.
func nlErrno(data []byte) syscall.Errno {
	if len(data) < 4 {
		return unix.EBADMSG
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(data)))
}

// nfRule is a rule as the kernel sends it (a dump or an echo): its comment
// and its expressions, each a name and its attributes.
type nfRule struct {
	comment string
	exprs   []nfExpr
}

type nfExpr struct {
	name string
	data []byte
}

// nlAttrs calls fn with the type and payload of each netlink attribute in b.
func nlAttrs(b []byte, fn func(typ uint16, data []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errors.New("a netlink attribute shorter than its header")
		}
		n := int(binary.NativeEndian.Uint16(b))
		if n < 4 || n > len(b) {
			return errors.New("a netlink attribute runs past its message")
		}
		if err := fn(binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[4:n]); err != nil {
			return err
		}
		b = b[min((n+3)&^3, len(b)):]
	}
	return nil
}

func nlString(b []byte) string { return strings.TrimRight(string(b), "\x00") }

func nlUint32(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("a 32-bit netlink attribute of %d bytes", len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

// parseNfRule reads a NEWRULE message's payload (nfgenmsg, attributes).
func parseNfRule(payload []byte) (nfRule, error) {
	var r nfRule
	if len(payload) < 4 {
		return r, errors.New("a rule message shorter than its header")
	}
	err := nlAttrs(payload[4:], func(typ uint16, data []byte) error {
		switch typ {
		case unix.NFTA_RULE_USERDATA:
			r.comment, _ = userdata.GetString(data, userdata.TypeComment)
		case unix.NFTA_RULE_EXPRESSIONS:
			return nlAttrs(data, func(_ uint16, elem []byte) error {
				var e nfExpr
				err := nlAttrs(elem, func(typ uint16, data []byte) error {
					switch typ {
					case unix.NFTA_EXPR_NAME:
						e.name = nlString(data)
					case unix.NFTA_EXPR_DATA:
						e.data = data
					}
					return nil
				})
				r.exprs = append(r.exprs, e)
				return err
			})
		}
		return nil
	})
	return r, err
}

// line renders the rule for a digest: its name and each expression as the
// kernel holds it, counters left out (they change as packets pass).
func (r nfRule) line(name string) string {
	b := []byte(name)
	for _, e := range r.exprs {
		b = append(append(b, ' '), e.name...)
		if e.name != "counter" {
			b = hex.AppendEncode(append(b, ':'), e.data)
		}
	}
	return string(b)
}

// nfTable is what a table dump says of a table.
type nfTable struct {
	name  string
	flags uint32
}

func parseNfTable(payload []byte) (nfTable, error) {
	var t nfTable
	if len(payload) < 4 {
		return t, errors.New("a table message shorter than its header")
	}
	err := nlAttrs(payload[4:], func(typ uint16, data []byte) error {
		var err error
		switch typ {
		case unix.NFTA_TABLE_NAME:
			t.name = nlString(data)
		case unix.NFTA_TABLE_FLAGS:
			t.flags, err = nlUint32(data)
		}
		return err
	})
	return t, err
}

// tableFlags dumps the family's tables and returns the flags of the one
// named; found is false when there is none.
func (s *nfSock) tableFlags(pf byte, name string) (flags uint32, found bool, err error) {
	tables, err := s.dump(unix.NFT_MSG_GETTABLE, pf, nil)
	if err != nil {
		return 0, false, err
	}
	for _, m := range tables {
		t, err := parseNfTable(m)
		if err != nil {
			return 0, false, err
		}
		if t.name == name {
			return t.flags, true, nil
		}
	}
	return 0, false, nil
}

// nfChain is what a chain dump says of a chain.
type nfChain struct {
	table, name, typ string
	hooked           bool
	hooknum          uint32
	priority         int32
	policy           *uint32
}

func parseNfChain(payload []byte) (nfChain, error) {
	var c nfChain
	if len(payload) < 4 {
		return c, errors.New("a chain message shorter than its header")
	}
	err := nlAttrs(payload[4:], func(typ uint16, data []byte) error {
		switch typ {
		case unix.NFTA_CHAIN_TABLE:
			c.table = nlString(data)
		case unix.NFTA_CHAIN_NAME:
			c.name = nlString(data)
		case unix.NFTA_CHAIN_TYPE:
			c.typ = nlString(data)
		case unix.NFTA_CHAIN_POLICY:
			p, err := nlUint32(data)
			c.policy = &p
			return err
		case unix.NFTA_CHAIN_HOOK:
			c.hooked = true
			return nlAttrs(data, func(typ uint16, data []byte) error {
				var err error
				switch typ {
				case unix.NFTA_HOOK_HOOKNUM:
					c.hooknum, err = nlUint32(data)
				case unix.NFTA_HOOK_PRIORITY:
					var p uint32
					p, err = nlUint32(data)
					c.priority = int32(p)
				}
				return err
			})
		}
		return nil
	})
	return c, err
}
