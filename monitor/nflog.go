package monitor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook"
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

	nfulaTimestamp = 3
	nfulaPayload   = 9
	nfulaPrefix    = 10
	nfulaUID       = 11

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

// nflogPacket is one NFLOG packet message.
type nflogPacket struct {
	Prefix  string
	Payload []byte // from the network header on
	UID     uint32
	HasUID  bool
	Time    time.Time // zero when the kernel sent no timestamp
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
		case nfulaTimestamp:
			// struct nfulnl_msg_packet_timestamp: __be64 sec, __be64 usec.
			ad.Do(func(b []byte) error {
				if len(b) < 16 {
					return fmt.Errorf("NFULA_TIMESTAMP of %d bytes", len(b))
				}
				sec, usec := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
				p.Time = time.Unix(int64(sec), int64(usec)*1000)
				return nil
			})
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
	conn  *netlink.Conn
	group uint16
	done  chan struct{} // closed when the reader has closed the socket
	fence *fence        // the namespace's fence now; guarded by Monitor.mu
}

// openNflog makes an NFLOG socket inside the namespace at ns and binds it
// to group. The socket stays in that namespace wherever it is read from;
// while it is open, it keeps the namespace alive.
func openNflog(ns hook.Netns, group uint16) (*netlink.Conn, error) {
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", ns.Path, err)
	}
	defer unix.Close(fd)
	// The path was checked by FindNetns, but a process may have exited and
	// its pid been reused since: check the namespace we hold.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != ns.ID.Dev || st.Ino != ns.ID.Ino {
		return nil, fmt.Errorf("%s is no longer network namespace %s", ns.Path, ns.ID)
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		return nil, fmt.Errorf("netlink socket in network namespace %s (%s): %w", ns.ID, ns.Path, err)
	}
	msg, err := nflogConfigMessage(group)
	if err == nil {
		_, err = conn.Execute(msg)
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("NFLOG group %d in network namespace %s is taken by another listener (another monitor, or ulogd?): %w", group, ns.ID, err)
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
	for {
		msgs, err := s.conn.Receive()
		now := time.Now()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return // stopped, and drained
		case errors.Is(err, unix.ENOBUFS):
			lost()
			continue
		case err != nil:
			if !strings.Contains(err.Error(), "use of closed") {
				failed(err)
			}
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
	s.conn.SetReadDeadline(time.Now().Add(drain))
}

func (s *nflogSocket) stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
