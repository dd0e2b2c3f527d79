// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Flow is what an attempt tells about its packet.
type Flow struct {
	Proto string // ProtoName of the layer-4 protocol
	Src   netip.Addr
	Dst   netip.Addr
	Sport uint16 // 0 where the protocol has no ports
	Dport uint16
}

// IP protocol numbers the monitor names.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)

var protoNames = map[int]string{
	protoICMP: "icmp", protoTCP: "tcp", protoUDP: "udp", protoICMPv6: "icmpv6",
	protoSCTP: "sctp", protoUDPLite: "udplite", 47: "gre", 50: "esp", 51: "ah",
}

// ProtoName names an IP protocol number as the events do: tcp, udp, icmp,
// icmpv6, ..., or the number itself.
func ProtoName(p int) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(p)
}

// hasPorts tells the protocols whose header starts with source and
// destination port.
func hasPorts(p int) bool {
	return p == protoTCP || p == protoUDP || p == protoSCTP || p == protoUDPLite
}

// IPv6 extension headers that may stand between the fixed header and the
// layer-4 header of a packet a container sends.
const (
	ext6HopByHop = 0
	ext6Routing  = 43
	ext6Fragment = 44
	ext6AH       = 51
	ext6DestOpts = 60
)

// ParsePacket reads the flow from the start of an IP packet, as NFLOG
// copies it: the network header and at least the first 4 bytes of the
// layer-4 header for the ports. A packet cut before its ports still gives
// the addresses and protocol, with ports 0.
func ParsePacket(b []byte) (Flow, error) {
	if len(b) < 1 {
		return Flow{}, fmt.Errorf("empty packet")
	}
	switch b[0] >> 4 {
	case 4:
		return parseIPv4(b)
	case 6:
		return parseIPv6(b)
	}
	return Flow{}, fmt.Errorf("IP version %d is neither 4 nor 6", b[0]>>4)
}

func parseIPv4(b []byte) (Flow, error) {
	if len(b) < 20 {
		return Flow{}, fmt.Errorf("IPv4 header cut at %d bytes", len(b))
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return Flow{}, fmt.Errorf("IPv4 header length %d is below 20", ihl)
	}
	f := Flow{
		Proto: ProtoName(int(b[9])),
		Src:   netip.AddrFrom4([4]byte(b[12:16])),
		Dst:   netip.AddrFrom4([4]byte(b[16:20])),
	}
	// Only the first fragment carries the ports.
	fragOffset := binary.BigEndian.Uint16(b[6:8]) & 0x1fff
	if hasPorts(int(b[9])) && fragOffset == 0 {
		f.Sport, f.Dport = ports(b, ihl)
	}
	return f, nil
}

func parseIPv6(b []byte) (Flow, error) {
	if len(b) < 40 {
		return Flow{}, fmt.Errorf("IPv6 header cut at %d bytes", len(b))
	}
	f := Flow{
		Src: netip.AddrFrom16([16]byte(b[8:24])),
		Dst: netip.AddrFrom16([16]byte(b[24:40])),
	}
	next, off := int(b[6]), 40
	firstFragment := true
	for {
		var extLen int
		switch next {
		case ext6HopByHop, ext6Routing, ext6DestOpts:
			if len(b) < off+2 {
				f.Proto = ProtoName(next)
				return f, nil
			}
			extLen = (int(b[off+1]) + 1) * 8
		case ext6AH:
			if len(b) < off+2 {
				f.Proto = ProtoName(next)
				return f, nil
			}
			extLen = (int(b[off+1]) + 2) * 4
		case ext6Fragment:
			if len(b) < off+8 {
				f.Proto = ProtoName(next)
				return f, nil
			}
			firstFragment = binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 == 0
			extLen = 8
		default:
			f.Proto = ProtoName(next)
			if hasPorts(next) && firstFragment {
				f.Sport, f.Dport = ports(b, off)
			}
			return f, nil
		}
		next = int(b[off])
		off += extLen
	}
}

// ports reads source and destination port at off, or zeros if the copy
// ends before them.
func ports(b []byte, off int) (sport, dport uint16) {
	if len(b) < off+4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(b[off : off+2]), binary.BigEndian.Uint16(b[off+2 : off+4])
}

// LogFields is what a kernel LOG line says, after the prefix.
type LogFields struct {
	Flow
	UID    uint32
	HasUID bool
}

// ParseLogLine reads a line that the kernel's LOG target (or nftables' log
// statement, which prints the same) wrote after the prefix:
//
//	IN= OUT=eth0 SRC=198.51.100.10 DST=198.51.100.1 ... PROTO=TCP SPT=41000 DPT=8080 ... UID=1000 GID=1000
//
// Only the outer packet counts: an ICMP error quotes the packet it answers
// in brackets, with its own SRC= and DST=; UID= follows the brackets.
func ParseLogLine(s string) (LogFields, error) {
	kv := map[string]string{}
	for _, tok := range strings.Fields(outside(s, '[', ']')) {
		k, v, ok := strings.Cut(tok, "=")
		if _, seen := kv[k]; ok && !seen {
			kv[k] = v
		}
	}
	var lf LogFields
	var err error
	if lf.Src, err = netip.ParseAddr(kv["SRC"]); err != nil {
		return lf, fmt.Errorf("SRC=%q: %v", kv["SRC"], err)
	}
	if lf.Dst, err = netip.ParseAddr(kv["DST"]); err != nil {
		return lf, fmt.Errorf("DST=%q: %v", kv["DST"], err)
	}
	proto, ok := kv["PROTO"]
	if !ok {
		return lf, fmt.Errorf("no PROTO=")
	}
	lf.Proto = logProtoName(proto)
	for key, dst := range map[string]*uint16{"SPT": &lf.Sport, "DPT": &lf.Dport} {
		if v, ok := kv[key]; ok {
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return lf, fmt.Errorf("%s=%q: %v", key, v, err)
			}
			*dst = uint16(n)
		}
	}
	if v, ok := kv["UID"]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return lf, fmt.Errorf("UID=%q: %v", v, err)
		}
		lf.UID, lf.HasUID = uint32(n), true
	}
	return lf, nil
}

// logProtoName maps the kernel's PROTO= names (TCP, UDP, ICMP, ICMPv6,
// UDPLITE, SCTP, or a number) to ProtoName's.
func logProtoName(p string) string {
	if n, err := strconv.Atoi(p); err == nil {
		return ProtoName(n)
	}
	return strings.ToLower(p)
}

// outside returns s without the parts between open and close (nested
// too).
func outside(s string, open, close byte) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == open:
			depth++
		case s[i] == close && depth > 0:
			depth--
			b.WriteByte(' ')
		case depth == 0:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
