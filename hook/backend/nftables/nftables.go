// SPDX-License-Identifier: Apache-2.0

// Package nftables is the nftables backend: the fence is a table of our own
// (inet, both families) with one base chain on the output hook, written in
// one netlink transaction in the container's namespace, with no binary run.
// exprs.go renders each rule of the model as nf_tables expressions.
package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/fence"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/nfnl"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Table is the inet table of our own that holds the fence of both
// families; Chain is its one base chain, on the output hook.
const (
	Table = "bypass_hook"
	Chain = "output"
)

// Priority places the fence's chain on the output hook. Base chains of
// one hook run in priority order, and a reject in any of them is final:
//   - after conntrack (-200), so ct state is known;
//   - after the nat output chains (-100), so the fence sees the destination
//     after DNAT, as the iptables backend's chain in filter OUTPUT does;
//   - before filter (0), where iptables-nft's OUTPUT and most nft rule sets
//     sit, so the fence is the first filter to see a packet, as the contract's
//     "OUTPUT jumps to it first" asks. Its accept ends only this chain: the
//     packet still meets the namespace's own filter rules after it, as the
//     iptables backend's RETURN does.
const Priority = -1

// priority is Priority as a value: converted to the unsigned 32 bits
// netlink carries, -1 wraps as the kernel expects.
var priority int32 = Priority

// chainType and hook are what our chain is: a filter chain on the output
// hook.
const (
	chainType = "filter"
	hook      = unix.NF_INET_LOCAL_OUT
	nfAccept  = 1 // NF_ACCEPT: the policy of a chain that lets packets on
)

// Nftables is the nftables backend: one netlink transaction for both
// families, opened in the target namespace; it needs no nft or iptables
// binary.
type Nftables struct {
	installed *installed // what the last Install made, for InstalledDigests
}

func (*Nftables) Name() string { return config.BackendNftables }

// open opens a netlink socket to nf_tables in the namespace at path.
func open(path string) (*nfnl.Conn, error) {
	c, err := nfnl.Open(path)
	if err != nil {
		return nil, fmt.Errorf("netlink socket to nf_tables in %s: %w", path, fence.NftErr(err))
	}
	return c, nil
}

// Install makes our table hold exactly rs, in one transaction, which the
// kernel applies whole or, on any error, not at all. The batch for a fresh
// namespace creates the table exclusively, so it fails with EEXIST where a
// fence is already there; only then is the table replaced, by a batch that
// adds it (a no-op), deletes it and makes it anew. A fresh install deletes
// nothing, which matters for time: the kernel frees deleted objects after
// an RCU grace period, and closing a netlink socket (at the latest, at the
// hook's exit) waits for frees still pending.
//
// The kernel echoes each rule as it stored it; their digests are what
// InstalledDigests returns, so that the create path need not read the
// fence back.
func (b *Nftables) Install(ns netns.Handle, rs rules.RuleSet) error {
	b.installed = nil
	c, err := open(ns.Path)
	if err != nil {
		return err
	}
	defer c.Close()
	echo := c.EchoFits(rs.Count())
	ruleMsgs, err := ruleMsgs(rs, echo)
	if err != nil {
		return err
	}
	echoes, err := c.Transact(batch(ruleMsgs, false))
	if errors.Is(err, unix.EEXIST) {
		echoes, err = c.Transact(batch(ruleMsgs, true))
	}
	if err != nil {
		return fmt.Errorf("nf_tables transaction (table inet %s, %d rules) in %s: %w", Table, len(ruleMsgs), ns.Path, fence.NftErr(err))
	}
	if !echo {
		return nil // InstalledDigests has nothing: the fence is read back
	}
	sums, _, foreign, err := digests(echoes)
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

// InstalledDigests returns the digests of the rules the last Install put
// into the namespace at path, as the kernel echoed them; false when there
// was none (or the rules were too many to be echoed).
func (b *Nftables) InstalledDigests(path string) (map[rules.Family]string, bool) {
	if b.installed == nil || b.installed.path != path {
		return nil, false
	}
	return b.installed.sums, true
}

// ruleMsgs renders every rule of rs as a NEWRULE request for our chain,
// tagged with its family and name; echo asks the kernel to echo each.
func ruleMsgs(rs rules.RuleSet, echo bool) ([]nfnl.Msg, error) {
	var msgs []nfnl.Msg
	for _, fam := range rules.Families {
		for _, r := range rs[fam] {
			exprs, err := Exprs(r, fam)
			if err != nil {
				return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
			}
			list := make([]netlink.Attribute, len(exprs))
			for i, e := range exprs {
				data, err := expr.Marshal(unix.NFPROTO_INET, e)
				if err != nil {
					return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
				}
				list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data}
			}
			attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
				{Type: unix.NFTA_RULE_TABLE, Data: nfnl.Cstring(Table)},
				{Type: unix.NFTA_RULE_CHAIN, Data: nfnl.Cstring(Chain)},
				{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nfnl.Attrs(list...)},
				{Type: unix.NFTA_RULE_USERDATA, Data: comment(fam, r)},
			})
			if err != nil {
				return nil, fmt.Errorf("%s rule %s: %w", fam, r, err)
			}
			msgs = append(msgs, nfnl.Msg{Type: unix.NFT_MSG_NEWRULE, Flags: unix.NLM_F_CREATE | unix.NLM_F_APPEND,
				Family: unix.NFPROTO_INET, Attrs: attrs, What: fmt.Sprintf("%s rule %s", fam, r.Name)})
		}
	}
	if echo {
		for i := range msgs {
			msgs[i].Flags |= unix.NLM_F_ECHO
		}
	}
	return msgs, nil
}

// batch is the transaction that makes our table hold exactly the rules
// of ruleMsgs: fresh, it creates the table exclusively; replacing, it adds
// the table, deletes it and makes it anew.
func batch(ruleMsgs []nfnl.Msg, replace bool) []nfnl.Msg {
	table := tableAttrs()
	chain := nfnl.Attrs(
		netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: nfnl.Cstring(Table)},
		netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: nfnl.Cstring(Chain)},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: nfnl.Attrs(
			netlink.Attribute{Type: unix.NFTA_HOOK_HOOKNUM, Data: binary.BigEndian.AppendUint32(nil, hook)},
			netlink.Attribute{Type: unix.NFTA_HOOK_PRIORITY, Data: binary.BigEndian.AppendUint32(nil, uint32(priority))},
		)},
		netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: nfnl.Cstring(chainType)},
	)
	what := "table inet " + Table
	msgs := []nfnl.Msg{{Type: unix.NFT_MSG_NEWTABLE, Flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, Family: unix.NFPROTO_INET, Attrs: table, What: what}}
	if replace {
		msgs = []nfnl.Msg{
			{Type: unix.NFT_MSG_NEWTABLE, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, Attrs: table, What: what},
			{Type: unix.NFT_MSG_DELTABLE, Family: unix.NFPROTO_INET, Attrs: table, What: "deleting " + what},
			{Type: unix.NFT_MSG_NEWTABLE, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, Attrs: table, What: what},
		}
	}
	msgs = append(msgs, nfnl.Msg{Type: unix.NFT_MSG_NEWCHAIN, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, Attrs: chain, What: "chain " + Chain})
	return append(msgs, ruleMsgs...)
}

// digests are the digests of each family's rules, from rule messages
// (echoes or a dump) in chain order, and the comments of the rules among
// them that bypass-hook did not make, which the digests leave out.
func digests(ruleMsgs [][]byte) (sums map[rules.Family]string, counters map[rules.Family][]uint64, foreign []string, err error) {
	d := newRuleDigests()
	for _, m := range ruleMsgs {
		if err := d.add(m); err != nil {
			return nil, nil, nil, err
		}
	}
	sums, counters, foreign = d.result()
	return sums, counters, foreign, nil
}

// ruleDigests takes digests one rule message at a time, keeping nothing of
// a message but its packets and, for a rule not of ours, its comment: a
// dump's messages are read where they were received (nfnl.DumpEach).
type ruleDigests struct {
	digesters map[rules.Family]fence.Digester
	counters  map[rules.Family][]uint64
	foreign   []string
	n         int    // messages added
	line      []byte // one rule's line at a time, in one buffer
	err       error  // the message that could not be read
}

func newRuleDigests() *ruleDigests {
	d := &ruleDigests{digesters: map[rules.Family]fence.Digester{}, counters: map[rules.Family][]uint64{}}
	for _, fam := range rules.Families {
		d.digesters[fam] = fence.NewDigester()
	}
	return d
}

func (d *ruleDigests) add(m []byte) error {
	d.n++
	r, err := nfnl.ParseRule(m)
	if err != nil {
		d.err = fmt.Errorf("rule %d: %w", d.n, err)
		return d.err
	}
	fam, name, ok := commentFamily(r.Comment)
	if !ok {
		d.foreign = append(d.foreign, r.Comment)
		return nil
	}
	d.line = r.AppendLine(d.line[:0], name)
	d.digesters[fam].Add(d.line)
	d.counters[fam] = append(d.counters[fam], r.Packets())
	return nil
}

func (d *ruleDigests) result() (sums map[rules.Family]string, counters map[rules.Family][]uint64, foreign []string) {
	sums = map[rules.Family]string{}
	for _, fam := range rules.Families {
		sums[fam] = d.digesters[fam].Sum()
	}
	counters = d.counters
	if len(d.foreign) > 0 || d.n == 0 {
		counters = nil // as Counters: no counters from a chain not all ours
	}
	return sums, counters, d.foreign
}

func tableAttrs() []byte {
	return nfnl.Attrs(
		netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: nfnl.Cstring(Table)},
		netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 0}},
	)
}

// Inspect reads the inet chains, tables and our chain's rules: three dumps
// on one socket.
func (b *Nftables) Inspect(ns netns.Handle) (fence.Seen, error) {
	c, err := open(ns.Path)
	if err != nil {
		return fence.Seen{}, err
	}
	defer c.Close()
	chainMsgs, err := c.Dump(unix.NFT_MSG_GETCHAIN, unix.NFPROTO_INET, nil)
	if err != nil {
		return fence.Seen{}, fmt.Errorf("listing nf_tables chains in %s: %w", ns.Path, fence.NftErr(err))
	}
	var problems []string
	seen := fence.Seen{Rules: map[rules.Family]string{}}
	for _, m := range chainMsgs {
		ch, err := nfnl.ParseChain(m)
		if err != nil {
			return fence.Seen{}, fmt.Errorf("reading the nf_tables chains in %s: %w", ns.Path, err)
		}
		if ch.Table != Table {
			continue
		}
		switch {
		case ch.Name != Chain:
			problems = append(problems, fmt.Sprintf("table inet %s has a chain %q that bypass-hook did not make", Table, ch.Name))
		case !ch.Hooked:
			problems = append(problems, fmt.Sprintf("chain %s of table inet %s is not on the output hook", Chain, Table))
		case ch.Hooknum != hook || ch.Priority != Priority ||
			ch.Type != chainType || (ch.Policy != nil && *ch.Policy != nfAccept):
			seen.Present = true
			problems = append(problems, fmt.Sprintf("chain %s of table inet %s is not the chain bypass-hook made (hook, priority %d, type or policy changed)", Chain, Table, Priority))
		default:
			seen.Present = true
		}
	}
	if !seen.Present {
		return seen, nil
	}
	flags, _, err := c.TableFlags(unix.NFPROTO_INET, Table)
	if err != nil {
		return fence.Seen{}, fmt.Errorf("listing nf_tables tables in %s: %w", ns.Path, fence.NftErr(err))
	}
	if flags != 0 {
		problems = append(problems, fmt.Sprintf("table inet %s has flags %#x (dormant: its rules do nothing)", Table, flags))
	}
	// Each rule is digested where the kernel's answer was received: a
	// copy of every rule of every fence was most of what status allocated.
	var d *ruleDigests
	err = c.DumpEach(unix.NFT_MSG_GETRULE, unix.NFPROTO_INET, chainAttrs(), func() { d = newRuleDigests() }, func(m []byte) error { return d.add(m) })
	switch {
	case d.err != nil:
		return fence.Seen{}, fmt.Errorf("reading the rules of table inet %s in %s: %w", Table, ns.Path, d.err)
	case err != nil:
		return fence.Seen{}, fmt.Errorf("reading the rules of table inet %s in %s: %w", Table, ns.Path, fence.NftErr(err))
	}
	sums, counters, foreign := d.result()
	seen.Rules, seen.Counters = sums, counters
	for _, c := range foreign {
		problems = append(problems, fmt.Sprintf("table inet %s has a rule that bypass-hook did not make (comment %q)", Table, c))
	}
	seen.Problem = strings.Join(problems, "; ")
	return seen, nil
}

// chainAttrs name our chain in a rule dump.
func chainAttrs() []byte {
	return nfnl.Attrs(
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: nfnl.Cstring(Table)},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: nfnl.Cstring(Chain)},
	)
}

func commentFamily(comment string) (rules.Family, string, bool) {
	famName, name, _ := strings.Cut(comment, " ")
	switch famName {
	case "ipv4":
		return rules.IPv4, name, true
	case "ipv6":
		return rules.IPv6, name, true
	}
	return 0, name, false
}

// Installed reports whether the fence is there, whole or not.
func (b *Nftables) Installed(ns netns.Handle) (bool, error) {
	seen, err := b.Inspect(ns)
	return seen.Present, err
}

// Remove deletes our table. Adding it first in the same transaction makes
// the delete succeed whether or not it was there.
func (b *Nftables) Remove(ns netns.Handle) error {
	c, err := open(ns.Path)
	if err != nil {
		return err
	}
	defer c.Close()
	table := tableAttrs()
	_, err = c.Transact([]nfnl.Msg{
		{Type: unix.NFT_MSG_NEWTABLE, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, Attrs: table, What: "table inet " + Table},
		{Type: unix.NFT_MSG_DELTABLE, Family: unix.NFPROTO_INET, Attrs: table, What: "deleting table inet " + Table},
	})
	if err != nil {
		return fmt.Errorf("deleting table inet %s in %s: %w", Table, ns.Path, fence.NftErr(err))
	}
	return nil
}

// Counters reads each rule's counter; the comment of each rule says its
// family, and the chain keeps the rules in install order.
func (b *Nftables) Counters(ns netns.Handle) (map[rules.Family][]uint64, error) {
	c, err := open(ns.Path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rs, err := c.ChainRules(unix.NFPROTO_INET, Table, Chain)
	if err != nil {
		return nil, fmt.Errorf("reading the rules of table inet %s in %s: %w", Table, ns.Path, fence.NftErr(err))
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("table inet %s in %s has no rules: the fence is not there", Table, ns.Path)
	}
	out := map[rules.Family][]uint64{}
	for _, r := range rs {
		fam, _, ok := commentFamily(r.Comment)
		if !ok {
			return nil, fmt.Errorf("table inet %s in %s has a rule not of ours (comment %q): remove the table and create the container again", Table, ns.Path, r.Comment)
		}
		out[fam] = append(out[fam], r.Packets())
	}
	return out, nil
}

// comment tags a rule with its family and name; nft list shows it, and
// Counters reads the family back from it.
func comment(fam rules.Family, r rules.Rule) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, fam.String()+" "+r.Name)
}

// Available returns nil when the kernel answers nf_tables requests in the
// namespace at path: one request that lists its inet tables (none, in a
// fresh namespace). A kernel without nf_tables refuses the netlink socket
// or the request.
func Available(path string) error {
	c, err := open(path)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_INET, nil); err != nil {
		return fmt.Errorf("listing the nf_tables tables in %s: %w", path, fence.NftErr(err))
	}
	return nil
}
