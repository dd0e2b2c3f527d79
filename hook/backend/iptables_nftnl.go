// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Where the host's iptables is the nf_tables variant, iptables-restore only
// translates its batch into nf_tables objects and commits them in one
// netlink transaction; starting the two tools (one per family) is most of
// what a fenced container's start costs. For a fresh namespace the hook
// therefore writes those objects itself, in one transaction for both
// families, exactly as iptables-nft 1.8.9 writes them: the same tables,
// chains, expressions (xtables compat matches and targets with the same
// revision and info bytes) and the same NFTA_RULE_COMPAT, so that the
// tools, iptables-save, Remove and Counters see what the tools would have
// made. Anything else (another iptables version or variant, a table that is
// already there, a rule this file does not know to be identical) takes the
// tools, as before.

// nftnlVersion is the iptables-nft whose objects this file writes; the
// tools' binary must carry it.
const nftnlVersion = "1.8.9 (nf_tables)"

// errNftnlUnverified marks a rule whose shape was not checked against what
// iptables-nft stores for it: such a rule set takes the tools.
var errNftnlUnverified = errors.New("rule shape not verified against iptables-nft")

// installNftnl installs a fresh fence over netlink. done is false when the
// tools must do it instead: not the nf_tables variant of iptables 1.8.9, no
// nf_tables here (the batch refused), a filter table already there
// (EEXIST), or a rule set it cannot render as the tools would.
func (b *Iptables) installNftnl(ns netns.Handle, rs rules.RuleSet) (done bool, err error) {
	if !nftVariant(b.Dir) {
		return false, nil
	}
	msgs, err := nftnlBatch(rs)
	if err != nil {
		return false, nil // errNftnlUnverified: the tools render it
	}
	s, err := openNfSock(ns.Path)
	if err != nil {
		return false, nil // no nf_tables netlink here: the tools say what is wrong
	}
	defer s.close()
	_, err = s.transact(msgs)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errBatchRefused), errors.Is(err, unix.EEXIST):
		return false, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return true, fmt.Errorf("nf_tables in %s: %w: %v", ns.Path, ErrMissingFeature, err)
	}
	return true, fmt.Errorf("installing the fence in the filter tables of nf_tables in %s (as iptables-nft would; nothing was changed): %w", ns.Path, err)
}

// nftVariant tells, without running anything, whether both restore tools
// in dir are iptables-nft 1.8.9: the symlinks (Debian's alternatives) end
// at xtables-nft-multi, which carries that version. Anything else, legacy
// or unknown, is left to the tools.
func nftVariant(dir string) bool {
	var multi string
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, tool))
		if err != nil || filepath.Base(p) != "xtables-nft-multi" || (multi != "" && p != multi) {
			return false
		}
		multi = p
	}
	return fileHoldsString(multi, nftnlVersion)
}

// fileHoldsString tells whether the file at path holds s as a C string (a
// NUL before and after it). It maps the file rather than reading it: a
// tool's binary is hundreds of KB, and the pages of a copy cost more than
// the search.
func fileHoldsString(path, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return false
	}
	defer unix.Munmap(data)
	// The search starts at s itself, not at a NUL: binaries are full of them.
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(s))
		if i < 0 {
			return false
		}
		at := off + i
		if at > 0 && data[at-1] == 0 && at+len(s) < len(data) && data[at+len(s)] == 0 {
			return true
		}
		off = at + 1
	}
}

// nftnl* are the netlink constants of nf_tables that iptables-nft uses.
const (
	nftnlTable      = "filter"
	nftnlOutputHook = 3 // NF_INET_LOCAL_OUT
	nftnlAccept     = 1 // NF_ACCEPT
)

// nftnlBatch renders what iptables-restore --noflush sends for the fresh
// batch (installBatch) of each family: the table, our chain, its rules,
// the base chain OUTPUT and its jump to ours. Unlike the tool it creates
// the table exclusively: a table already there may hold a base chain with
// a policy of its own, which the tool would leave and a NEWCHAIN with
// policy accept would change, so then the tools do it.
func nftnlBatch(rs rules.RuleSet) ([]nfMsg, error) {
	var msgs []nfMsg
	add := func(typ uint16, flags uint16, fam rules.Family, attrs []byte, what string) {
		msgs = append(msgs, nfMsg{typ: typ, flags: flags, fam: byte(tableFamily(fam)), attrs: attrs, what: what})
	}
	for _, fam := range rules.Families {
		add(unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, fam, attrs(
			attr{unix.NFTA_TABLE_NAME, cstring(nftnlTable)}), fmt.Sprintf("%s table filter", fam))
		add(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_EXCL, fam, attrs(
			attr{unix.NFTA_CHAIN_TABLE, cstring(nftnlTable)},
			attr{unix.NFTA_CHAIN_NAME, cstring(Chain)}), fmt.Sprintf("%s chain %s", fam, Chain))
		for _, r := range rs[fam] {
			exprs, err := XtExprs(r, fam)
			if err != nil {
				return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
			}
			data, err := nftnlRule(Chain, exprs, protoNumber(r.Proto), fam)
			if err != nil {
				return nil, err
			}
			add(unix.NFT_MSG_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_APPEND, fam, data,
				fmt.Sprintf("%s rule %q", fam, "-A "+Chain+" "+joinArgs(IptablesArgs(r, fam))))
		}
		add(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_CREATE, fam, attrs(
			attr{unix.NFTA_CHAIN_TABLE, cstring(nftnlTable)},
			attr{unix.NFTA_CHAIN_NAME, cstring("OUTPUT")},
			attr{unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, attrs(
				attr{unix.NFTA_HOOK_HOOKNUM, be32(nftnlOutputHook)},
				attr{unix.NFTA_HOOK_PRIORITY, be32(0)})},
			attr{unix.NFTA_CHAIN_POLICY, be32(nftnlAccept)},
			attr{unix.NFTA_CHAIN_TYPE, cstring("filter")}), fmt.Sprintf("%s base chain OUTPUT", fam))
		// -I OUTPUT 1: a rule without NLM_F_APPEND goes first.
		data, err := nftnlRule("OUTPUT", []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: Chain}}, 0, fam)
		if err != nil {
			return nil, err
		}
		add(unix.NFT_MSG_NEWRULE, unix.NLM_F_CREATE, fam, data, fmt.Sprintf("%s rule \"-I OUTPUT 1 -j %s\"", fam, Chain))
	}
	return msgs, nil
}

// nftnlRule is a NEWRULE's attributes. iptables-nft gives every rule its
// -p protocol as NFTA_RULE_COMPAT (0 without -p, flags 0 as nothing is
// inverted): nft_compat checks each xt match and target against it (REJECT
// --reject-with tcp-reset needs tcp, icmp6 needs ipv6-icmp).
func nftnlRule(chain string, exprs []expr.Any, proto uint32, fam rules.Family) ([]byte, error) {
	var list []attr
	for _, e := range exprs {
		data, err := expr.Marshal(byte(tableFamily(fam)), e)
		if err != nil {
			return nil, err
		}
		list = append(list, attr{unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, data})
	}
	return attrs(
		attr{unix.NFTA_RULE_TABLE, cstring(nftnlTable)},
		attr{unix.NFTA_RULE_CHAIN, cstring(chain)},
		attr{unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, attrs(list...)},
		attr{unix.NLA_F_NESTED | unix.NFTA_RULE_COMPAT, attrs(
			attr{unix.NFTA_RULE_COMPAT_PROTO, be32(proto)},
			attr{unix.NFTA_RULE_COMPAT_FLAGS, be32(0)})},
	), nil
}

type attr struct {
	typ  uint16
	data []byte
}

// attrs encodes attributes written as attr{type, data}.
func attrs(as ...attr) []byte {
	nas := make([]netlink.Attribute, len(as))
	for i, a := range as {
		nas[i] = netlink.Attribute{Type: a.typ, Data: a.data}
	}
	return mustAttrs(nas)
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// protoNumber is the IP protocol of -p.
func protoNumber(p rules.Proto) uint32 {
	return map[rules.Proto]uint32{rules.ProtoTCP: unix.IPPROTO_TCP, rules.ProtoUDP: unix.IPPROTO_UDP,
		rules.ProtoICMP: unix.IPPROTO_ICMP, rules.ProtoICMPv6: unix.IPPROTO_ICMPV6}[p]
}

// XtExprs renders one rule as the expressions iptables-nft 1.8.9 stores for
// `-A BYPASS-HOOK <IptablesArgs>`: the interface, -p and -d natively (in
// that order, whatever the order of the arguments), then each match in the
// order of the arguments (tcp and udp ports, --syn and limit natively; u32,
// rt, icmp6, hl, conntrack and owner as xtables compat), a counter, and the
// target (RETURN and NFLOG natively, LOG and REJECT as compat).
func XtExprs(r rules.Rule, fam rules.Family) ([]expr.Any, error) {
	if err := verifiedShape(r, fam); err != nil {
		return nil, err
	}
	var e []expr.Any
	cmp := func(data []byte) expr.Any { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }
	if r.OutIface != "" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, cmp(cstring(r.OutIface)))
	}
	if r.Proto != rules.ProtoAny {
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp([]byte{byte(protoNumber(r.Proto))}))
	}
	if r.Dst.IsValid() {
		e = append(e, dstExprs(r.Dst.Masked(), fam)...)
	}
	if r.SourceRouted {
		if fam == rules.IPv6 {
			e = append(e, &expr.Match{Name: "rt", Rev: 0, Info: info(rtAnyInfo())})
		} else {
			e = append(e, &expr.Match{Name: "u32", Rev: 0, Info: info(u32IPOptionsInfo())})
		}
	}
	if r.ICMPv6Type != nil {
		e = append(e, &expr.Match{Name: "icmp6", Rev: 0, Info: info(icmp6Info(*r.ICMPv6Type))})
	}
	if r.HopLimit != 0 {
		e = append(e, &expr.Match{Name: "hl", Rev: 0, Info: info(hlEqInfo(r.HopLimit))})
	}
	if r.DPort != 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			cmp(binary.BigEndian.AppendUint16(nil, r.DPort)))
	}
	if r.TCPSyn {
		// --syn is --tcp-flags FIN,SYN,RST,ACK SYN.
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x01 | 0x02 | 0x04 | 0x10}, Xor: []byte{0}},
			cmp([]byte{0x02}))
	}
	if r.Established {
		e = append(e, &expr.Match{Name: "conntrack", Rev: 3, Info: info(conntrackEstablishedInfo())})
	}
	if r.UID != nil {
		e = append(e, &expr.Match{Name: "owner", Rev: 1, Info: info(ownerUIDInfo(*r.UID))})
	}
	target, err := xtTarget(r, fam)
	if err != nil {
		return nil, err
	}
	return append(append(e, target[:len(target)-1]...), &expr.Counter{}, target[len(target)-1]), nil
}

// verifiedShape refuses rules unlike those the model makes, whose
// expressions were compared with what iptables-nft stores (see the test):
// where two fields of a rule meet in a way never checked, the order or the
// form iptables-nft picks is not known, and the tools must render it.
func verifiedShape(r rules.Rule, fam rules.Family) error {
	switch {
	case !slices.Contains([]rules.Proto{rules.ProtoAny, rules.ProtoTCP, rules.ProtoUDP, rules.ProtoICMP, rules.ProtoICMPv6}, r.Proto):
		// A protocol the tools may not know: rendered without its
		// match, the rule would match every packet.
		return errNftnlUnverified
	case r.OutIface != "" && (r.OutIface != "lo" || r.Proto != rules.ProtoAny || r.Dst.IsValid() || r.SourceRouted || r.UID != nil || r.Established),
		r.DPort != 0 && (r.Proto != rules.ProtoTCP && r.Proto != rules.ProtoUDP || r.TCPSyn),
		r.TCPSyn && r.Proto != rules.ProtoTCP,
		r.ICMPv6Type != nil && (fam != rules.IPv6 || r.Proto != rules.ProtoICMPv6),
		r.HopLimit != 0 && (fam != rules.IPv6 || r.ICMPv6Type == nil),
		r.Proto == rules.ProtoICMP && fam != rules.IPv4, r.Proto == rules.ProtoICMPv6 && fam != rules.IPv6,
		r.SourceRouted && (r.Proto != rules.ProtoAny || r.Dst.IsValid() || r.UID != nil || r.Established),
		r.UID != nil && (r.Proto != rules.ProtoAny || r.Dst.IsValid() || r.Established),
		r.Established && (r.Proto != rules.ProtoAny || r.Dst.IsValid()),
		r.Dst.IsValid() && rules.FamilyOf(r.Dst.Addr()) != fam,
		r.Action == rules.Log && (r.Log == nil || r.Log.Target != config.LogKernel && r.Log.Target != config.LogNflog ||
			len(r.Log.Prefix) > config.MaxLogPrefix || strings.Trim(r.Log.Prefix, prefixChars) != ""):
		return errNftnlUnverified
	}
	return nil
}

// prefixChars are those a log prefix of the model has (config's prefix
// stem, ':' and ' '): the tools read them as written, with no escapes.
const prefixChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-: "

// dstExprs is -d: iptables-nft loads only the bytes a prefix covers
// whole, and the whole address with a mask when a byte is partly covered;
// /0 matches everything and renders nothing.
func dstExprs(p netip.Prefix, fam rules.Family) []expr.Any {
	offset := uint32(16) // struct iphdr's daddr
	if fam == rules.IPv6 {
		offset = 24 // struct ipv6hdr's daddr
	}
	addr := p.Addr().AsSlice()
	bits := p.Bits()
	if bits == 0 {
		return nil
	}
	if bits%8 == 0 {
		n := uint32(bits / 8)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:n]},
		}
	}
	mask := make([]byte, len(addr))
	for i := range mask {
		switch {
		case bits >= 8*(i+1):
			mask[i] = 0xff
		case bits > 8*i:
			mask[i] = byte(0xff << (8*(i+1) - bits))
		}
	}
	n := uint32(len(addr))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
	}
}

// xtTarget is what a rule does, last the target itself; a log rule's
// limit match comes before it (and before the counter).
func xtTarget(r rules.Rule, fam rules.Family) ([]expr.Any, error) {
	switch r.Action {
	case rules.Accept:
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}, nil
	case rules.Log:
		l := r.Log
		limit, err := limitExpr(l.RatePer, l.RateUnit, l.Burst)
		if err != nil {
			return nil, err
		}
		if l.Target == config.LogNflog {
			return []expr.Any{limit, &expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: l.Group, Data: []byte(l.Prefix)}}, nil
		}
		li, err := logInfo(l.Prefix, l.LogUID)
		if err != nil {
			return nil, err
		}
		return []expr.Any{limit, &expr.Target{Name: "LOG", Rev: 0, Info: info(li)}}, nil
	case rules.RejectTCPReset, rules.RejectPortUnreachable, rules.RejectAdminProhibited:
		with := rejectWith[fam][r.Action]
		return []expr.Any{&expr.Target{Name: "REJECT", Rev: 0, Info: info(binary.NativeEndian.AppendUint32(nil, with))}}, nil
	}
	return nil, fmt.Errorf("%w: action %q", errNftnlUnverified, r.Action)
}

// rejectWith is enum ipt_reject_with and enum ip6t_reject_with.
var rejectWith = map[rules.Family]map[rules.Action]uint32{
	rules.IPv4: {rules.RejectPortUnreachable: 3, rules.RejectTCPReset: 7, rules.RejectAdminProhibited: 8},
	rules.IPv6: {rules.RejectAdminProhibited: 1, rules.RejectPortUnreachable: 4, rules.RejectTCPReset: 6},
}

// limitExpr is the limit match as iptables-nft 1.8.9 turns it into the
// native limit: libxt_limit keeps the interval between packets in units of
// 1/10000 s (avg, rounded down), and add_nft_limit turns that back into a
// rate per the largest unit it divides well, so 24/day is stored as 1/hour.
func limitExpr(per int, unit string, burst int) (*expr.Limit, error) {
	const scale = 10000 // XT_LIMIT_SCALE
	secs := map[string]uint32{"second": 1, "minute": 60, "hour": 60 * 60, "day": 24 * 60 * 60}[unit]
	if secs == 0 || per <= 0 || burst < 0 || burst > 10000 {
		return nil, fmt.Errorf("%w: limit %d/%s burst %d", errNftnlUnverified, per, unit, burst)
	}
	avg := scale * secs / uint32(per)
	if avg == 0 {
		return nil, fmt.Errorf("%w: limit %d/%s is too fast for iptables", errNftnlUnverified, per, unit)
	}
	mult := []uint32{scale * 24 * 60 * 60, scale * 60 * 60, scale * 60, scale}
	i := 1
	for ; i < len(mult); i++ {
		if avg > mult[i] || mult[i]/avg < mult[i]%avg {
			break
		}
	}
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(mult[i-1] / avg),
		Unit: expr.LimitTime(mult[i-1] / scale), Burst: uint32(burst)}, nil
}

func info(b []byte) xt.InfoAny { u := xt.Unknown(b); return &u }

// xtAlign pads an xt info struct to XT_ALIGN (8 bytes on 64-bit hosts).
func xtAlign(b []byte) []byte {
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// logInfo is struct xt_log_info: level, logflags, prefix[30]; the level is
// LOG's default, 4 (warning), and --log-uid is XT_LOG_UID.
func logInfo(prefix string, uid bool) ([]byte, error) {
	if len(prefix) > 29 || strings.ContainsRune(prefix, 0) {
		return nil, fmt.Errorf("%w: LOG prefix %q", errNftnlUnverified, prefix)
	}
	b := make([]byte, 32)
	b[0] = 4
	if uid {
		b[1] = 0x08
	}
	copy(b[2:], prefix)
	return b, nil
}

// u32IPOptionsInfo is struct xt_u32 for "0>>24&0xF=6:15": one test that
// reads the first word, shifts right 24, ands 0xF (the IHL) and checks it
// is 6 to 15.
func u32IPOptionsInfo() []byte {
	const (
		maxSize  = 10 // XT_U32_MAXSIZE
		locSize  = 8  // struct xt_u32_location_element: u32 number, u8 nextop
		valSize  = 8  // struct xt_u32_value_element: u32 min, max
		testSize = (maxSize+1)*(locSize+valSize) + 2 + 2
		opAnd    = 0 // XT_U32_AND
		opRShift = 2 // XT_U32_RIGHTSH
	)
	type loc struct {
		number uint32
		op     byte
	}
	locs := []loc{{0, opAnd}, {24, opRShift}, {0xF, opAnd}}
	vals := [][2]uint32{{6, 15}}
	b := make([]byte, (maxSize+1)*testSize+2)
	for i, l := range locs {
		binary.NativeEndian.PutUint32(b[i*locSize:], l.number)
		b[i*locSize+4] = l.op
	}
	for i, v := range vals {
		o := (maxSize+1)*locSize + i*valSize
		binary.NativeEndian.PutUint32(b[o:], v[0])
		binary.NativeEndian.PutUint32(b[o+4:], v[1])
	}
	b[(maxSize+1)*(locSize+valSize)] = byte(len(locs))   // nnums
	b[(maxSize+1)*(locSize+valSize)+1] = byte(len(vals)) // nvalues
	b[(maxSize+1)*testSize] = 1                          // ntests; invert stays 0
	return xtAlign(b)
}

// rtAnyInfo is struct ip6t_rt as libip6t_rt leaves it without options:
// any routing header (segsleft 0 to 0xFFFFFFFF, no flags).
func rtAnyInfo() []byte {
	const hops = 16 // IP6T_RT_HOPS
	b := make([]byte, 4+8+4+1+1+2+hops*16+1)
	binary.NativeEndian.PutUint32(b[8:], 0xFFFFFFFF) // segsleft[1]
	return xtAlign(b)
}

// icmp6Info is struct ip6t_icmp: the type, any code (0 to 0xFF).
func icmp6Info(typ uint8) []byte { return xtAlign([]byte{typ, 0, 0xFF, 0}) }

// hlEqInfo is struct ip6t_hl_info: mode IP6T_HL_EQ (0), the hop limit.
func hlEqInfo(hl uint8) []byte { return xtAlign([]byte{0, hl}) }

// ownerUIDInfo is struct xt_owner_match_info: uid_min, uid_max, gid_min,
// gid_max, match XT_OWNER_UID, invert 0.
func ownerUIDInfo(uid uint32) []byte {
	b := make([]byte, 18)
	binary.NativeEndian.PutUint32(b[0:], uid)
	binary.NativeEndian.PutUint32(b[4:], uid)
	b[16] = 1 // XT_OWNER_UID
	return xtAlign(b)
}

// conntrackEstablishedInfo is struct xt_conntrack_mtinfo3 for --ctstate
// RELATED,ESTABLISHED: match_flags XT_CONNTRACK_STATE, state_mask the bits
// of IP_CT_ESTABLISHED (1<<1) and IP_CT_RELATED (1<<2).
func conntrackEstablishedInfo() []byte {
	b := make([]byte, 164)
	const addrs = 8 * 16                                       // orig/repl src/dst addr and mask
	const ports = addrs + 4 + 4                                // after expires_min, expires_max
	matchFlags := ports + 2 + 8                                // after l4proto and four ports
	binary.NativeEndian.PutUint16(b[matchFlags:], 1)           // XT_CONNTRACK_STATE
	binary.NativeEndian.PutUint16(b[matchFlags+4:], 1<<1|1<<2) // state_mask, after invert_flags
	return xtAlign(b)
}
