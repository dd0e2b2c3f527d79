// SPDX-License-Identifier: Apache-2.0

package nftables

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Kernel constants the expressions need that x/sys does not name.
const (
	icmpPortUnreach    = 3  // ICMP_PORT_UNREACH
	icmpPktFiltered    = 13 // ICMP_PKT_FILTERED: iptables' icmp-admin-prohibited
	icmpv6AdmProhibit  = 1  // ICMPV6_ADM_PROHIBITED
	icmpv6PortUnreach  = 4  // ICMPV6_PORT_UNREACH
	ifNameSize         = 16 // IFNAMSIZ
	tcpFlagsFinSynRstA = 0x17
	tcpFlagSyn         = 0x02
)

// NftExprs renders one rule as nf_tables expressions for the inet table,
// the same matches and action as the iptables backend's Args. Every rule first matches its
// family, so both families share the one chain, and has a counter. Accept is
// accept: it ends only our chain, like the iptables backend's RETURN.
func Exprs(r rules.Rule, fam rules.Family) ([]expr.Any, error) {
	if err := nftCheck(r, fam); err != nil {
		return nil, err
	}
	action, err := nftAction(r, fam)
	if err != nil {
		return nil, err
	}
	return append(nftMatches(r, fam), action...), nil
}

// nftL4Protos are the layer-4 protocols a rule can match, by number.
var nftL4Protos = map[rules.Proto]byte{rules.ProtoTCP: unix.IPPROTO_TCP, rules.ProtoUDP: unix.IPPROTO_UDP, rules.ProtoICMP: unix.IPPROTO_ICMP, rules.ProtoICMPv6: unix.IPPROTO_ICMPV6}

// nftCheck refuses matches that contradict each other or that nf_tables
// cannot express: such a rule is a bug in the model, and rendering it into
// something else would fence the wrong packets.
func nftCheck(r rules.Rule, fam rules.Family) error {
	if len(r.OutIface) >= ifNameSize {
		return fmt.Errorf("interface name %q is longer than %d bytes", r.OutIface, ifNameSize-1)
	}
	if _, ok := nftL4Protos[r.Proto]; r.Proto != rules.ProtoAny && !ok {
		return fmt.Errorf("protocol %q has no nf_tables rendering", r.Proto)
	}
	if r.ICMPv6Type != nil && r.Proto != rules.ProtoICMPv6 {
		return fmt.Errorf("an ICMPv6 type (%d) needs protocol %s", *r.ICMPv6Type, rules.ProtoICMPv6)
	}
	if r.HopLimit != 0 && fam != rules.IPv6 {
		return fmt.Errorf("a hop limit match is for IPv6, not %s", fam)
	}
	if r.Dst.IsValid() && rules.FamilyOf(r.Dst.Addr()) != fam {
		return fmt.Errorf("destination %s is not %s", r.Dst, fam)
	}
	if r.DPort != 0 && r.Proto != rules.ProtoTCP && r.Proto != rules.ProtoUDP {
		return fmt.Errorf("a destination port needs protocol tcp or udp")
	}
	if r.TCPSyn && r.Proto != rules.ProtoTCP {
		return fmt.Errorf("a SYN match needs protocol tcp")
	}
	return nil
}

// nftMatches renders what a rule matches, its family first; nftCheck has
// passed it.
func nftMatches(r rules.Rule, fam rules.Family) []expr.Any {
	nfproto := byte(unix.NFPROTO_IPV4)
	if fam == rules.IPv6 {
		nfproto = unix.NFPROTO_IPV6
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		cmpEq([]byte{nfproto}),
	}
	if r.SourceRouted {
		e = append(e, nftSourceRouted(fam)...)
	}
	if r.OutIface != "" {
		name := make([]byte, ifNameSize)
		copy(name, r.OutIface)
		e = append(e, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, cmpEq(name))
	}
	if r.Proto != rules.ProtoAny {
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{nftL4Protos[r.Proto]}))
	}
	if r.ICMPv6Type != nil {
		e = append(e, transport(0, 1), cmpEq([]byte{*r.ICMPv6Type}))
	}
	if r.HopLimit != 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1}, cmpEq([]byte{r.HopLimit}))
	}
	if r.Dst.IsValid() {
		e = append(e, nftDst(r.Dst, fam)...)
	}
	if r.DPort != 0 {
		e = append(e, transport(2, 2), cmpEq(binaryutil.BigEndian.PutUint16(r.DPort)))
	}
	if r.TCPSyn {
		// iptables --syn: of SYN, ACK, RST and FIN only SYN is set.
		e = append(e, transport(13, 1), mask([]byte{tcpFlagsFinSynRstA}), cmpEq([]byte{tcpFlagSyn}))
	}
	if r.Established {
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			mask(binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)),
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
	}
	if r.UID != nil {
		e = append(e, &expr.Meta{Key: expr.MetaKeySKUID, Register: 1}, cmpEq(binaryutil.NativeEndian.PutUint32(*r.UID)))
	}
	return e
}

// nftSourceRouted matches what the iptables backend's rt (IPv6) and u32
// (IPv4) matches do.
func nftSourceRouted(fam rules.Family) []expr.Any {
	if fam == rules.IPv6 {
		// exthdr rt exists: a routing header of any type.
		return []expr.Any{
			&expr.Exthdr{Op: expr.ExthdrOpIpv6, Type: unix.IPPROTO_ROUTING, Len: 1, Flags: unix.NFT_EXTHDR_F_PRESENT, DestRegister: 1},
			cmpEq([]byte{1}),
		}
	}
	// ip hdrlength != 5: the header carries options, as the
	// iptables backend's u32 match.
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 1},
		mask([]byte{0x0f}),
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{5}},
	}
}

// nftDst matches a destination prefix of the family; a host address needs
// no mask.
func nftDst(dst netip.Prefix, fam rules.Family) []expr.Any {
	offset := uint32(16) // daddr in the IPv4 header
	if fam == rules.IPv6 {
		offset = 24
	}
	dst = dst.Masked()
	addr := dst.Addr().AsSlice()
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))}}
	if dst.Bits() < dst.Addr().BitLen() {
		e = append(e, mask(prefixMask(dst.Bits(), len(addr))))
	}
	return append(e, cmpEq(addr))
}

// nftAction renders what a rule does with the packets it matches, its
// counter included.
func nftAction(r rules.Rule, fam rules.Family) ([]expr.Any, error) {
	switch r.Action {
	case rules.Accept:
		return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}, nil
	case rules.Log:
		return nftLog(r.Log)
	case rules.RejectTCPReset:
		if r.Proto != rules.ProtoTCP {
			return nil, errors.New("a TCP reset needs protocol tcp")
		}
		return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}, nil
	case rules.RejectPortUnreachable:
		code := map[rules.Family]uint8{rules.IPv4: icmpPortUnreach, rules.IPv6: icmpv6PortUnreach}[fam]
		return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}, nil
	case rules.RejectAdminProhibited:
		code := map[rules.Family]uint8{rules.IPv4: icmpPktFiltered, rules.IPv6: icmpv6AdmProhibit}[fam]
		return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}, nil
	}
	return nil, fmt.Errorf("action %q has no nf_tables rendering", r.Action)
}

// nftLog renders a log rule's action: its rate limit, counter and log.
func nftLog(l *rules.LogSpec) ([]expr.Any, error) {
	if l == nil {
		return nil, errors.New("a log rule has no log spec")
	}
	unit, ok := map[string]expr.LimitTime{"second": expr.LimitTimeSecond, "minute": expr.LimitTimeMinute, "hour": expr.LimitTimeHour, "day": expr.LimitTimeDay}[l.RateUnit]
	if !ok || l.RatePer <= 0 || l.Burst < 0 {
		return nil, fmt.Errorf("log rate %d/%s burst %d is not a valid limit", l.RatePer, l.RateUnit, l.Burst)
	}
	// The counter after the limit, as iptables counts only the packets
	// that pass its limit match.
	e := []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.RatePer), Unit: unit, Burst: uint32(l.Burst)}, &expr.Counter{}}
	switch l.Target {
	case config.LogNflog:
		return append(e, &expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: l.Group, Data: []byte(l.Prefix)}), nil
	case config.LogKernel:
		lg := &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(l.Prefix)}
		if l.LogUID {
			lg.Key |= 1 << unix.NFTA_LOG_FLAGS
			lg.Flags = expr.LogFlagsUID
		}
		return append(e, lg), nil
	}
	return nil, fmt.Errorf("log target %q has no nf_tables rendering", l.Target)
}

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func transport(offset, length uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: length}
}

// mask ANDs register 1 with m.
func mask(m []byte) *expr.Bitwise {
	return &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(m)), Mask: m, Xor: make([]byte, len(m))}
}

func prefixMask(bits, size int) []byte {
	m := make([]byte, size)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}
