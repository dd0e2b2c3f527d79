// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// NFLOG settings the monitor asks of the kernel.
const (
	// nflogCopyRange is how much of each packet the kernel copies: the
	// network header with room for IPv6 extension headers, and the ports.
	nflogCopyRange = 128
	// nflogQueueThreshold 1 sends each packet at once; the kernel's default
	// (100) holds them for up to a second to batch them.
	nflogQueueThreshold = 1
	// nflogTimeout, in 1/100 s, bounds the wait of a batch all the same.
	nflogTimeout = 1
	// nflogReadBuffer absorbs a burst of log rules while the monitor
	// writes; the log rules' rate limit keeps bursts short.
	nflogReadBuffer = 1 << 20
)

// From linux/netfilter/nfnetlink_log.h, which x/sys/unix does not carry.
const (
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1

	nfulaPayload = 9
	nfulaPrefix  = 10
	nfulaUID     = 11

	nfulaCfgCmd     = 1
	nfulaCfgMode    = 2
	nfulaCfgTimeout = 4
	nfulaCfgQthresh = 5

	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2
)

// Message types of the nfnetlink ULOG subsystem (NFLOG).
var (
	nflogMsgPacket = netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | nfulnlMsgPacket)
	nflogMsgConfig = netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | nfulnlMsgConfig)
)

// nfgenmsg is the header of every nfnetlink message: address family,
// version, and a resource id (for NFLOG, the group), big-endian.
func nfgenmsg(family uint8, resID uint16) []byte {
	b := []byte{family, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], resID)
	return b
}

// nflogConfigMessage binds the socket to group and asks for the packet
// headers (copy mode packet, nflogCopyRange bytes), one packet per message.
// The kernel adds the socket's uid (NFULA_UID) to every packet that has a
// local socket; no flag asks for it.
func nflogConfigMessage(group uint16) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Bytes(nfulaCfgCmd, []byte{nfulnlCfgCmdBind})
	// struct nfulnl_msg_config_mode: __be32 copy_range, __u8 copy_mode, pad.
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, nflogCopyRange)
	mode[4] = nfulnlCopyPacket
	ae.Bytes(nfulaCfgMode, mode)
	ae.Uint32(nfulaCfgQthresh, nflogQueueThreshold)
	ae.Uint32(nfulaCfgTimeout, nflogTimeout)
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: nflogMsgConfig, Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(nfgenmsg(unix.AF_UNSPEC, group), attrs...),
	}, nil
}

// nflogPacket is one NFLOG packet message. It has no time: since Linux 5.1
// the kernel sends NFULA_TIMESTAMP only for the hooks up to forward, never
// for output, where the fence's rules are; events carry the time the
// monitor read them.
type nflogPacket struct {
	Prefix  string
	Payload []byte // from the network header on
	UID     uint32
	HasUID  bool
}

// parseNflogPacket decodes an NFULNL_MSG_PACKET message's data: the
// nfgenmsg header, then big-endian NFULA_* attributes.
func parseNflogPacket(data []byte) (nflogPacket, error) {
	var p nflogPacket
	if len(data) < 4 {
		return p, fmt.Errorf("NFLOG message of %d bytes has no nfgenmsg header", len(data))
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return p, fmt.Errorf("NFLOG attributes: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case nfulaPrefix:
			p.Prefix = ad.String()
		case nfulaPayload:
			p.Payload = ad.Bytes()
		case nfulaUID:
			p.UID, p.HasUID = ad.Uint32(), true
		}
	}
	if err := ad.Err(); err != nil {
		return p, fmt.Errorf("NFLOG attributes: %w", err)
	}
	return p, nil
}

// nflogSocket is an NFLOG socket bound to a group inside one fence's
// namespace. It reads until stopped, handing packets to the monitor.
type nflogSocket struct {
	key   string // the namespace's record key
	conn  *netlink.Conn
	group uint16
	done  chan struct{} // closed when the reader has closed the socket
	// fence is the namespace's fence now, old the one before it (a
	// replaced or re-made fence), whose records may still be queued.
	// Guarded by Monitor.mu.
	fence, old *fence

	mu       sync.Mutex
	stopping bool // stop was called, and no revive since
	ending   bool // the reader has given up; revive comes too late
}

// openNflog makes an NFLOG socket inside the namespace at ns and binds it
// to group. The socket stays in that namespace wherever it is read from;
// while it is open, it keeps the namespace alive.
func openNflog(ns netns.Handle, group uint16) (*netlink.Conn, error) {
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", ns.Path, err)
	}
	defer unix.Close(fd)
	// A path that is not held (a /proc/PID one) may lead elsewhere once
	// its process exits and the pid is reused: check the namespace we hold.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != ns.ID.Dev || st.Ino != ns.ID.Ino {
		return nil, fmt.Errorf("%s is no longer network namespace %s", ns.Path, ns.ID)
	}
	// Made on a thread of netns.In, never the process's first: netlink's
	// own Config.NetNS joins on a goroutine Go may put there, and while it
	// is there /proc/self/ns/net (the host guard's own namespace) names
	// the fence's.
	var conn *netlink.Conn
	err = netns.In("/proc/self/fd/"+strconv.Itoa(fd), func() error {
		var derr error
		conn, derr = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return derr
	})
	if err != nil && conn != nil {
		conn.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("netlink socket in network namespace %s (%s): %w", ns.ID, ns.Path, err)
	}
	msg, err := nflogConfigMessage(group)
	if err == nil {
		_, err = conn.Execute(msg)
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, unix.EPERM) {
			// The kernel says EPERM both for a group bound by another
			// socket of the namespace and for a bind without the capability.
			return nil, fmt.Errorf("binding NFLOG group %d in network namespace %s: %w: the group is held by another listener (another monitor, ulogd), or the monitor lacks CAP_NET_ADMIN", group, ns.ID, err)
		}
		return nil, fmt.Errorf("binding NFLOG group %d in network namespace %s: %w", group, ns.ID, err)
	}
	if err := conn.SetReadBuffer(nflogReadBuffer); err != nil {
		conn.Close()
		return nil, fmt.Errorf("NFLOG socket buffer in network namespace %s: %w", ns.ID, err)
	}
	return conn, nil
}

// read hands every packet to handle until the socket fails or stop's
// deadline passes, then closes the socket. lost counts what the kernel
// dropped because the socket's buffer was full.
func (s *nflogSocket) read(handle func(nflogPacket, time.Time), lost func(), failed func(error)) {
	defer close(s.done)
	defer s.conn.Close()
	defer s.end()
	for {
		msgs, err := s.conn.Receive()
		now := time.Now()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.endIfStopping() {
				return // stopped, and drained
			}
			continue // revived meanwhile
		case errors.Is(err, unix.ENOBUFS):
			lost()
			continue
		case err != nil:
			// Only the reader closes the socket, so this is a real failure.
			failed(err)
			return
		}
		for _, m := range msgs {
			if m.Header.Type != nflogMsgPacket {
				continue
			}
			p, err := parseNflogPacket(m.Data)
			if err != nil {
				failed(err)
				continue
			}
			handle(p, now)
		}
	}
}

// stop lets the reader take what is queued already, for up to drain, and
// then close the socket; it does not wait.
func (s *nflogSocket) stop(drain time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	s.conn.SetReadDeadline(time.Now().Add(drain))
}

// revive undoes stop, and reports whether it came in time: false when the
// reader is closing the socket already (wait for done before binding the
// group again).
func (s *nflogSocket) revive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return false
	}
	s.stopping = false
	s.conn.SetReadDeadline(time.Time{})
	return true
}

// endIfStopping decides, at a passed deadline, whether the reader ends: in
// one step with revive's check, so that a revive is never lost.
func (s *nflogSocket) endIfStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending = s.stopping
	return s.ending
}

func (s *nflogSocket) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending = true
}

func (s *nflogSocket) stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
