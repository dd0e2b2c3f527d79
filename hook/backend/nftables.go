// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// NftTable is the inet table of our own that holds the fence of both
// families; NftChain is its one base chain, on the output hook.
const (
	NftTable = "bypass_hook"
	NftChain = "output"
)

// NftPriority places the fence's chain on the output hook. Base chains of
// one hook run in priority order, and a reject in any of them is final:
//   - after conntrack (-200), so ct state is known;
//   - after the nat output chains (-100), so the fence sees the destination
//     after DNAT, as the iptables backend's chain in filter OUTPUT does;
//   - before filter (0), where iptables-nft's OUTPUT and most nft rule sets
//     sit, so the fence is the first filter to see a packet, as the contract's
//     "OUTPUT jumps to it first" asks. Its accept ends only this chain: the
//     packet still meets the namespace's own filter rules after it, as the
//     iptables backend's RETURN does.
const NftPriority = -1

// Nftables is the nftables backend: one netlink transaction for both
// families, opened in the target namespace; it needs no nft or iptables
// binary.
type Nftables struct {
	installed *installed // what the last Install made, for ReadBack
}

func (*Nftables) Name() string { return config.BackendNftables }

var (
	nftTable = &nftables.Table{Name: NftTable, Family: nftables.TableFamilyINet}
	nftChain = &nftables.Chain{
		Name:     NftChain,
		Table:    nftTable,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityRef(NftPriority),
	}
)

// nftConn opens a netlink connection to nf_tables in the namespace at path.
// The library makes the socket on a thread that joins the namespace only for
// that; every request on the socket then acts in the namespace, wherever the
// hook's goroutines run.
func nftConn(path string) (*nftables.Conn, func(), error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("netlink connection to nf_tables in %s: %w", path, nftErr(err))
	}
	return c, func() { c.CloseLasting(); unix.Close(fd) }, nil
}

// Install makes our table hold exactly rs, in one transaction, which the
// kernel applies whole or, on any error, not at all. The batch for a fresh
// namespace creates the table exclusively, so it fails with EEXIST where a
// fence is already there; only then is the table replaced, by a batch that
// adds it (a no-op), deletes it and makes it anew. A fresh install deletes
// nothing, which matters for time: the kernel frees deleted objects after
// an RCU grace period, and closing a netlink socket (at the latest, at the
// hook's exit) waits for frees still pending, 8 to 32 ms here.
//
// The kernel echoes each rule as it stored it; their digests are what
// ReadBack returns, so that the create path need not read the fence back.
func (b *Nftables) Install(ns netns.Handle, rs rules.RuleSet) error {
	b.installed = nil
	s, err := openNfSock(ns.Path)
	if err != nil {
		return err
	}
	defer s.close()
	echo := s.echoFits(rs.Count())
	ruleMsgs, err := nftRuleMsgs(rs, echo)
	if err != nil {
		return err
	}
	echoes, err := s.transact(nftBatch(ruleMsgs, false))
	if errors.Is(err, unix.EEXIST) {
		echoes, err = s.transact(nftBatch(ruleMsgs, true))
	}
	if err != nil {
		return fmt.Errorf("nf_tables transaction (table inet %s, %d rules) in %s: %w", NftTable, len(ruleMsgs), ns.Path, nftErr(err))
	}
	if !echo {
		return nil // ReadBack reads the fence back
	}
	sums, foreign, err := nftDigests(echoes)
	if err == nil && len(foreign) > 0 {
		err = fmt.Errorf("a rule that bypass-hook did not make (comment %q)", foreign[0])
	}
	if err != nil {
		return fmt.Errorf("reading the rules the kernel echoed in %s: %w", ns.Path, err)
	}
	b.installed = &installed{path: ns.Path, sums: sums}
	return nil
}

// installed is what the last Install of a backend value made.
type installed struct {
	path string
	sums map[rules.Family]string
}

// installedDigests returns the digests of the rules the last Install put
// into the namespace at path, as the kernel echoed them; false when there
// was none.
func (b *Nftables) installedDigests(path string) (map[rules.Family]string, bool) {
	if b.installed == nil || b.installed.path != path {
		return nil, false
	}
	return b.installed.sums, true
}

// nftRuleMsgs renders every rule of rs as a NEWRULE request for our chain,
// tagged with its family and name; echo asks the kernel to echo each.
func nftRuleMsgs(rs rules.RuleSet, echo bool) ([]nfMsg, error) {
	var msgs []nfMsg
	for _, fam := range rules.Families {
		for _, r := range rs[fam] {
			exprs, err := NftExprs(r, fam)
			if err != nil {
				return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
			}
			list := make([]netlink.Attribute, len(exprs))
			for i, e := range exprs {
				data, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
				if err != nil {
					return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
				}
				list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data}
			}
			attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
				{Type: unix.NFTA_RULE_TABLE, Data: cstring(NftTable)},
				{Type: unix.NFTA_RULE_CHAIN, Data: cstring(NftChain)},
				{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: mustAttrs(list)},
				{Type: unix.NFTA_RULE_USERDATA, Data: nftComment(fam, r)},
			})
			if err != nil {
				return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
			}
			msgs = append(msgs, nfMsg{typ: unix.NFT_MSG_NEWRULE, flags: unix.NLM_F_CREATE | unix.NLM_F_APPEND,
				fam: unix.NFPROTO_INET, attrs: attrs, what: fmt.Sprintf("%s rule %s", fam, r.Name)})
		}
	}
	if echo {
		for i := range msgs {
			msgs[i].flags |= unix.NLM_F_ECHO
		}
	}
	return msgs, nil
}

// nftBatch is the transaction that makes our table hold exactly the rules
// of ruleMsgs: fresh, it creates the table exclusively; replacing, it adds
// the table, deletes it and makes it anew.
func nftBatch(ruleMsgs []nfMsg, replace bool) []nfMsg {
	table := nftTableAttrs()
	chain := mustAttrs([]netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstring(NftTable)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstring(NftChain)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: mustAttrs([]netlink.Attribute{
			{Type: unix.NFTA_HOOK_HOOKNUM, Data: binaryutil.BigEndian.PutUint32(uint32(*nftChain.Hooknum))},
			{Type: unix.NFTA_HOOK_PRIORITY, Data: binaryutil.BigEndian.PutUint32(uint32(*nftChain.Priority))},
		})},
		{Type: unix.NFTA_CHAIN_TYPE, Data: cstring(string(nftChain.Type))},
	})
	what := "table inet " + NftTable
	msgs := []nfMsg{{typ: unix.NFT_MSG_NEWTABLE, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, fam: unix.NFPROTO_INET, attrs: table, what: what}}
	if replace {
		msgs = []nfMsg{
			{typ: unix.NFT_MSG_NEWTABLE, flags: unix.NLM_F_CREATE, fam: unix.NFPROTO_INET, attrs: table, what: what},
			{typ: unix.NFT_MSG_DELTABLE, fam: unix.NFPROTO_INET, attrs: table, what: "deleting " + what},
			{typ: unix.NFT_MSG_NEWTABLE, flags: unix.NLM_F_CREATE, fam: unix.NFPROTO_INET, attrs: table, what: what},
		}
	}
	msgs = append(msgs, nfMsg{typ: unix.NFT_MSG_NEWCHAIN, flags: unix.NLM_F_CREATE, fam: unix.NFPROTO_INET, attrs: chain, what: "chain " + NftChain})
	return append(msgs, ruleMsgs...)
}

// nftDigests are the digests of each family's rules, from rule messages
// (echoes or a dump) in chain order, and the comments of the rules among
// them that bypass-hook did not make, which the digests leave out.
func nftDigests(ruleMsgs [][]byte) (sums map[rules.Family]string, foreign []string, err error) {
	lines := map[rules.Family][]string{}
	for i, m := range ruleMsgs {
		r, err := parseNfRule(m)
		if err != nil {
			return nil, nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		fam, name, ok := nftCommentFamily(r.comment)
		if !ok {
			foreign = append(foreign, r.comment)
			continue
		}
		lines[fam] = append(lines[fam], r.line(name))
	}
	sums = map[rules.Family]string{}
	for _, fam := range rules.Families {
		sums[fam] = digest(lines[fam])
	}
	return sums, foreign, nil
}

func nftTableAttrs() []byte {
	return mustAttrs([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstring(NftTable)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 0}},
	})
}

func cstring(s string) []byte { return append([]byte(s), 0) }

// mustAttrs encodes attributes whose sizes are known to fit.
func mustAttrs(attrs []netlink.Attribute) []byte {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic(err)
	}
	return b
}

// Inspect reads the inet chains, tables and our chain's rules: three dumps
// on one socket.
func (b *Nftables) Inspect(ns netns.Handle) (Seen, error) {
	s, err := openNfSock(ns.Path)
	if err != nil {
		return Seen{}, err
	}
	defer s.close()
	chainMsgs, err := s.dump(unix.NFT_MSG_GETCHAIN, unix.NFPROTO_INET, nil)
	if err != nil {
		return Seen{}, fmt.Errorf("listing nf_tables chains in %s: %w", ns.Path, nftErr(err))
	}
	var problems []string
	seen := Seen{Rules: map[rules.Family]string{}}
	for _, m := range chainMsgs {
		ch, err := parseNfChain(m)
		if err != nil {
			return Seen{}, fmt.Errorf("reading the nf_tables chains in %s: %w", ns.Path, err)
		}
		if ch.table != NftTable {
			continue
		}
		switch {
		case ch.name != NftChain:
			problems = append(problems, fmt.Sprintf("table inet %s has a chain %q that bypass-hook did not make", NftTable, ch.name))
		case !ch.hooked:
			problems = append(problems, fmt.Sprintf("chain %s of table inet %s is not on the output hook", NftChain, NftTable))
		case ch.hooknum != uint32(*nftChain.Hooknum) || ch.priority != NftPriority ||
			ch.typ != string(nftChain.Type) || (ch.policy != nil && *ch.policy != uint32(nftables.ChainPolicyAccept)):
			seen.Present = true
			problems = append(problems, fmt.Sprintf("chain %s of table inet %s is not the chain bypass-hook made (hook, priority %d, type or policy changed)", NftChain, NftTable, NftPriority))
		default:
			seen.Present = true
		}
	}
	if !seen.Present {
		return seen, nil
	}
	flags, _, err := s.tableFlags(unix.NFPROTO_INET, NftTable)
	if err != nil {
		return Seen{}, fmt.Errorf("listing nf_tables tables in %s: %w", ns.Path, nftErr(err))
	}
	if flags != 0 {
		problems = append(problems, fmt.Sprintf("table inet %s has flags %#x (dormant: its rules do nothing)", NftTable, flags))
	}
	ruleMsgs, err := s.dump(unix.NFT_MSG_GETRULE, unix.NFPROTO_INET, mustAttrs([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(NftTable)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring(NftChain)},
	}))
	if err != nil {
		return Seen{}, fmt.Errorf("reading the rules of table inet %s in %s: %w", NftTable, ns.Path, nftErr(err))
	}
	sums, foreign, err := nftDigests(ruleMsgs)
	if err != nil {
		return Seen{}, fmt.Errorf("reading the rules of table inet %s in %s: %w", NftTable, ns.Path, err)
	}
	seen.Rules = sums
	for _, c := range foreign {
		problems = append(problems, fmt.Sprintf("table inet %s has a rule that bypass-hook did not make (comment %q)", NftTable, c))
	}
	seen.Problem = strings.Join(problems, "; ")
	return seen, nil
}

// nftFamily reads a rule's family and name from its comment ("ipv4 proxy").
func nftFamily(r *nftables.Rule) (rules.Family, string, bool) {
	comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return nftCommentFamily(comment)
}

func nftCommentFamily(comment string) (rules.Family, string, bool) {
	famName, name, _ := strings.Cut(comment, " ")
	fam, ok := map[string]rules.Family{"ipv4": rules.IPv4, "ipv6": rules.IPv6}[famName]
	return fam, name, ok
}

// Installed reports whether the fence is there, whole or not.
func (b *Nftables) Installed(ns netns.Handle) (bool, error) {
	seen, err := b.Inspect(ns)
	return seen.Present, err
}

// Remove deletes our table. Adding it first in the same transaction makes
// the delete succeed whether or not it was there.
func (b *Nftables) Remove(ns netns.Handle) error {
	s, err := openNfSock(ns.Path)
	if err != nil {
		return err
	}
	defer s.close()
	table := nftTableAttrs()
	_, err = s.transact([]nfMsg{
		{typ: unix.NFT_MSG_NEWTABLE, flags: unix.NLM_F_CREATE, fam: unix.NFPROTO_INET, attrs: table, what: "table inet " + NftTable},
		{typ: unix.NFT_MSG_DELTABLE, fam: unix.NFPROTO_INET, attrs: table, what: "deleting table inet " + NftTable},
	})
	if err != nil {
		return fmt.Errorf("deleting table inet %s in %s: %w", NftTable, ns.Path, nftErr(err))
	}
	return nil
}

// Counters reads each rule's counter; the comment of each rule says its
// family, and the chain keeps the rules in install order.
func (b *Nftables) Counters(ns netns.Handle) (map[rules.Family][]uint64, error) {
	c, done, err := nftConn(ns.Path)
	if err != nil {
		return nil, err
	}
	defer done()
	nftRules, err := c.GetRules(nftTable, nftChain)
	if err != nil {
		return nil, fmt.Errorf("reading the rules of table inet %s in %s: %w", NftTable, ns.Path, nftErr(err))
	}
	if len(nftRules) == 0 {
		return nil, fmt.Errorf("table inet %s in %s has no rules: the fence is not there", NftTable, ns.Path)
	}
	out := map[rules.Family][]uint64{}
	for _, r := range nftRules {
		fam, _, ok := nftFamily(r)
		if !ok {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			return nil, fmt.Errorf("table inet %s in %s has a rule not of ours (comment %q): remove the table and create the container again", NftTable, ns.Path, comment)
		}
		var n uint64
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				n = ctr.Packets
			}
		}
		out[fam] = append(out[fam], n)
	}
	return out, nil
}

// nftComment tags a rule with its family and name; nft list shows it, and
// Counters reads the family back from it.
func nftComment(fam rules.Family, r rules.Rule) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, fam.String()+" "+r.Name)
}

// nftErr adds what to do to the errors a kernel without nf_tables gives.
func nftErr(err error) error {
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w (the kernel has no nf_tables: use backend: iptables)", err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: %w (a table, chain or expression the rules need is missing from the kernel)", ErrMissingFeature, err)
	}
	return err
}

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
// the same matches and action as IptablesArgs. Every rule first matches its
// family, so both families share the one chain, and has a counter. Accept is
// accept: it ends only our chain, like the iptables backend's RETURN.
func NftExprs(r rules.Rule, fam rules.Family) ([]expr.Any, error) {
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
