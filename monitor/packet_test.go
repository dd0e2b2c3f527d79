// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// ipv4 builds an IPv4 header (20 bytes, or more with options) and l4.
func ipv4(proto byte, src, dst string, fragOffset uint16, optWords int, l4 []byte) []byte {
	ihl := 5 + optWords
	b := make([]byte, ihl*4)
	b[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(b[6:], fragOffset)
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

// ipv6 builds an IPv6 header with next header next, then rest.
func ipv6(next byte, src, dst string, rest []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	b[6] = next
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, rest...)
}

func l4ports(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

func TestParsePacket(t *testing.T) {
	hopByHop := append([]byte{protoUDP, 0, 0, 0, 0, 0, 0, 0}, l4ports(5000, 53)...)
	// A fragment header: next header TCP, offset 0 (first fragment) ...
	firstFrag := append([]byte{protoTCP, 0, 0, 0, 0, 0, 0, 1}, l4ports(40000, 443)...)
	// ... and offset 185 (8-byte units), where no ports are.
	laterFrag := append([]byte{protoTCP, 0, 0x05, 0xc8, 0, 0, 0, 1}, l4ports(1, 2)...)
	for _, tc := range []struct {
		name    string
		pkt     []byte
		want    Flow
		wantErr bool
	}{
		{"ipv4 tcp", ipv4(protoTCP, "198.51.100.10", "198.51.100.1", 0, 0, l4ports(41000, 8080)),
			Flow{"tcp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 41000, 8080}, false},
		{"ipv4 udp with options", ipv4(protoUDP, "198.51.100.10", "192.0.2.53", 0, 2, l4ports(5353, 53)),
			Flow{"udp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("192.0.2.53"), 5353, 53}, false},
		{"ipv4 icmp has no ports", ipv4(protoICMP, "198.51.100.10", "198.51.100.1", 0, 0, []byte{8, 0, 0, 0, 0, 1, 0, 1}),
			Flow{"icmp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}, false},
		{"ipv4 later fragment has no ports", ipv4(protoUDP, "198.51.100.10", "198.51.100.1", 100, 0, l4ports(1, 2)),
			Flow{"udp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}, false},
		{"ipv4 cut before the ports", ipv4(protoTCP, "198.51.100.10", "198.51.100.1", 0, 0, []byte{1, 2}),
			Flow{"tcp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}, false},
		{"ipv4 gre by name", ipv4(47, "198.51.100.10", "198.51.100.1", 0, 0, nil),
			Flow{"gre", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}, false},
		{"ipv4 unknown protocol by number", ipv4(253, "198.51.100.10", "198.51.100.1", 0, 0, nil),
			Flow{"253", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}, false},
		{"ipv6 tcp", ipv6(protoTCP, "2001:db8:1::a", "2001:db8:1::1", l4ports(40000, 9090)),
			Flow{"tcp", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 40000, 9090}, false},
		{"ipv6 udp after hop-by-hop", ipv6(ext6HopByHop, "2001:db8:1::a", "2001:db8::53", hopByHop),
			Flow{"udp", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8::53"), 5000, 53}, false},
		{"ipv6 first fragment", ipv6(ext6Fragment, "2001:db8:1::a", "2001:db8:1::1", firstFrag),
			Flow{"tcp", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 40000, 443}, false},
		{"ipv6 later fragment", ipv6(ext6Fragment, "2001:db8:1::a", "2001:db8:1::1", laterFrag),
			Flow{"tcp", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 0, 0}, false},
		{"ipv6 icmpv6", ipv6(protoICMPv6, "2001:db8:1::a", "2001:db8:1::1", []byte{128, 0, 0, 0}),
			Flow{"icmpv6", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 0, 0}, false},
		{"ipv6 cut inside an extension header", ipv6(ext6DestOpts, "2001:db8:1::a", "2001:db8:1::1", nil),
			Flow{"60", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 0, 0}, false},
		{"empty", nil, Flow{}, true},
		{"ipv4 header cut", ipv4(protoTCP, "198.51.100.10", "198.51.100.1", 0, 0, nil)[:19], Flow{}, true},
		{"ipv6 header cut", ipv6(protoTCP, "2001:db8:1::a", "2001:db8:1::1", nil)[:39], Flow{}, true},
		{"ipv4 header length below 20", append([]byte{0x44}, make([]byte, 30)...), Flow{}, true},
		{"version 5", append([]byte{0x50}, make([]byte, 40)...), Flow{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePacket(tc.pkt)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParsePacket: whatever the kernel copies, parsing never panics and
// never reports ports for a packet too short to hold them.
func FuzzParsePacket(f *testing.F) {
	f.Add(ipv4(protoTCP, "198.51.100.10", "198.51.100.1", 0, 0, l4ports(1, 2)))
	f.Add(ipv6(ext6HopByHop, "2001:db8:1::a", "2001:db8:1::1", []byte{ext6AH, 0, 0, 0, 0, 0, 0, 0, protoUDP, 1, 0, 0}))
	f.Add(ipv6(ext6Routing, "2001:db8:1::a", "2001:db8:1::1", []byte{ext6Routing, 255}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := ParsePacket(b)
		if err == nil && (fl.Sport != 0 || fl.Dport != 0) && len(b) < 24 {
			t.Errorf("ports %d/%d from %d bytes", fl.Sport, fl.Dport, len(b))
		}
	})
}

func TestParseLogLine(t *testing.T) {
	u := func(n uint32) LogFields { return LogFields{UID: n, HasUID: true} }
	for _, tc := range []struct {
		name    string
		line    string
		want    LogFields
		wantErr string
	}{
		{"ipv4 tcp",
			"IN= OUT=eth0 SRC=198.51.100.10 DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=TCP SPT=41234 DPT=8080 WINDOW=64240 RES=0x00 SYN URGP=0 UID=1000 GID=1000 ",
			withFlow(u(1000), Flow{"tcp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 41234, 8080}), ""},
		{"ipv6 udp, the kernel's long address form",
			"IN= OUT=eth0 SRC=2001:0db8:0001:0000:0000:0000:0000:000a DST=2001:0db8:0001:0000:0000:0000:0000:0001 LEN=48 TC=0 HOPLIMIT=64 FLOWLBL=811 PROTO=UDP SPT=40000 DPT=53 LEN=8 UID=0 GID=0",
			withFlow(u(0), Flow{"udp", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 40000, 53}), ""},
		{"icmpv6 echo, no ports",
			"IN= OUT=eth0 SRC=2001:0db8:0001:0000:0000:0000:0000:000a DST=2001:0db8:0001:0000:0000:0000:0000:0001 LEN=104 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0 ID=7 SEQ=1 UID=65534 GID=65534",
			withFlow(u(65534), Flow{"icmpv6", netip.MustParseAddr("2001:db8:1::a"), netip.MustParseAddr("2001:db8:1::1"), 0, 0}), ""},
		{"icmp error quoting a packet: the outer one counts, and the uid after the quote",
			"IN= OUT=eth0 SRC=198.51.100.10 DST=198.51.100.1 LEN=88 TOS=0x00 PREC=0xC0 TTL=64 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=198.51.100.1 DST=198.51.100.10 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=2 PROTO=UDP SPT=53 DPT=4000 LEN=40 ] UID=7 GID=7",
			withFlow(u(7), Flow{"icmp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}), ""},
		{"no uid (no local socket)",
			"IN= OUT=eth0 SRC=198.51.100.10 DST=198.51.100.1 LEN=40 PROTO=TCP SPT=1 DPT=2 WINDOW=0 RES=0x00 RST URGP=0",
			withFlow(LogFields{}, Flow{"tcp", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 1, 2}), ""},
		{"protocol by number", "SRC=198.51.100.10 DST=198.51.100.1 PROTO=47 UID=0",
			withFlow(u(0), Flow{"gre", netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.1"), 0, 0}), ""},
		{"no SRC", "IN= OUT=eth0 DST=198.51.100.1 PROTO=TCP", LogFields{}, "SRC="},
		{"bad DST", "SRC=198.51.100.10 DST=nowhere PROTO=TCP", LogFields{}, "DST="},
		{"no PROTO", "SRC=198.51.100.10 DST=198.51.100.1", LogFields{}, "PROTO="},
		{"bad port", "SRC=198.51.100.10 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=70000", LogFields{}, "DPT="},
		{"bad uid", "SRC=198.51.100.10 DST=198.51.100.1 PROTO=TCP UID=-1", LogFields{}, "UID="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLogLine(tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one about %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func withFlow(lf LogFields, f Flow) LogFields {
	lf.Flow = f
	return lf
}
