// SPDX-License-Identifier: Apache-2.0

package iptables

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/backend/fence"
	"github.com/bypass-hook/bypass-hook/hook/nfnl"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// The nf_tables variant of iptables (Debian's default) keeps its rules in
// nf_tables: per family, the table "filter" holds our chain and OUTPUT's
// jump to it. Inspect, Counters and Remove read that table over netlink,
// in one way (readFilter), rather than running iptables-save and
// iptables-restore once per family each; Remove takes both families out in
// one transaction. The table is read raw, every expression with its
// attributes, rather than through a library, which drops an expression it
// does not know: a rule with one more expression (one that never matches,
// say) would then look unchanged. Legacy iptables keeps its rules in
// x_tables, which only the tools reach.

// xtTable is the table of each family where iptables-nft keeps the filter
// table's chains.
const xtTable = "filter"

// filterTable is what nf_tables holds of one family's table "filter".
type filterTable struct {
	found  bool
	family byte
	flags  uint32
	chains []nfnl.Chain
	rules  map[string][]nfnl.Rule // by chain, in order
	sets   int
}

func tableFamily(fam rules.Family) byte {
	if fam == rules.IPv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// readFilter reads the family's table "filter": its flags, chains, their
// rules and how many sets it has.
func readFilter(c *nfnl.Conn, fam rules.Family) (filterTable, error) {
	t := filterTable{family: tableFamily(fam), rules: map[string][]nfnl.Rule{}}
	var err error
	t.flags, t.found, err = c.TableFlags(t.family, xtTable)
	if err != nil || !t.found {
		return t, err
	}
	msgs, err := c.Dump(unix.NFT_MSG_GETCHAIN, t.family, nil)
	if err != nil {
		return t, err
	}
	for _, m := range msgs {
		ch, err := nfnl.ParseChain(m)
		if err != nil {
			return t, err
		}
		if ch.Table != xtTable {
			continue
		}
		t.chains = append(t.chains, ch)
		if t.rules[ch.Name], err = c.ChainRules(t.family, xtTable, ch.Name); err != nil {
			return t, err
		}
	}
	sets, err := c.Dump(unix.NFT_MSG_GETSET, t.family, nfnl.Attrs(netlink.Attribute{Type: unix.NFTA_SET_TABLE, Data: nfnl.Cstring(xtTable)}))
	t.sets = len(sets)
	return t, err
}

func (t filterTable) chain(name string) *nfnl.Chain {
	for i := range t.chains {
		if t.chains[i].Name == name {
			return &t.chains[i]
		}
	}
	return nil
}

// hasFence: nf_tables has our chain in this table.
func (t filterTable) hasFence() bool { return t.chain(Chain) != nil }

// jumpsTo tells a rule whose verdict sends packets to chain: a jump or a
// goto. It is the one test of "a jump to our chain", for what Inspect sees
// and what Remove takes out.
func jumpsTo(r nfnl.Rule, chain string) bool {
	if len(r.Exprs) == 0 {
		return false
	}
	code, target, ok := r.Exprs[len(r.Exprs)-1].Verdict()
	return ok && (code == unix.NFT_JUMP || code == unix.NFT_GOTO) && target == chain
}

// onlyJumpsTo tells a rule that does nothing but count and jump to chain,
// as `-I OUTPUT 1 -j BYPASS-HOOK` is stored: a counter, then the verdict.
func onlyJumpsTo(r nfnl.Rule, chain string) bool {
	if len(r.Exprs) != 2 || r.Exprs[0].Name != "counter" {
		return false
	}
	code, target, ok := r.Exprs[1].Verdict()
	return ok && code == unix.NFT_JUMP && target == chain
}

// seen is what Inspect reports of the fence in this table.
func (t filterTable) seen(fam rules.Family) (jump bool, problems []string, sum string) {
	lines := make([]string, len(t.rules[Chain]))
	for i, r := range t.rules[Chain] {
		lines[i] = r.Line("")
	}
	sum = fence.Digest(lines)
	out := t.chain("OUTPUT")
	if out == nil {
		return false, nil, sum
	}
	outRules := t.rules["OUTPUT"]
	jump = slices.ContainsFunc(outRules, func(r nfnl.Rule) bool { return jumpsTo(r, Chain) })
	if !jump {
		return false, nil, sum
	}
	if !onlyJumpsTo(outRules[0], Chain) {
		problems = append(problems, fmt.Sprintf("%s: OUTPUT's first rule is not the jump to %s", fam, Chain))
	}
	// At filter's priority (0), after nat's (-100): moved in front of nat,
	// the fence would see a destination that a DNAT then changes.
	if !out.Hooked || out.Hooknum != unix.NF_INET_LOCAL_OUT || out.Type != "filter" || out.Priority != 0 {
		problems = append(problems, fmt.Sprintf("%s: chain OUTPUT of table filter is not a filter chain on the output hook at priority 0", fam))
	}
	if t.flags != 0 {
		problems = append(problems, fmt.Sprintf("%s: table filter has flags %#x (dormant: its rules do nothing)", fam, t.flags))
	}
	return jump, problems, sum
}

// packets is each rule's packet counter; iptables-nft gives every rule one.
func (t filterTable) packets() []uint64 {
	out := make([]uint64, len(t.rules[Chain]))
	for i, r := range t.rules[Chain] {
		out[i] = r.Packets()
	}
	return out
}

// emptyBut tells whether the table holds nothing but the chain skip (with
// its rules and the jumps to it) and base chains that accept, as
// iptables-nft leaves it: then the whole table goes, rather than being left
// behind empty. skip "" asks whether it is empty.
func (t filterTable) emptyBut(skip string) bool {
	if !t.found || t.sets > 0 {
		return false
	}
	for _, ch := range t.chains {
		if ch.Name == skip {
			continue
		}
		if !ch.Hooked || (ch.Policy != nil && *ch.Policy != nfAccept) {
			return false // a chain of someone else, or a policy that is not the default
		}
		for _, r := range t.rules[ch.Name] {
			if skip == "" || !jumpsTo(r, skip) {
				return false
			}
		}
	}
	return true
}

// nfAccept is NF_ACCEPT, the policy of a base chain that lets packets on.
const nfAccept = 1

// removal is the messages that take the fence out of this table: the whole
// table where it holds nothing else, else the jumps to our chain (the
// kernel refuses to delete a chain that is jumped to) and the chain, with
// its rules.
func (t filterTable) removal() []nfnl.Msg {
	if !t.hasFence() {
		return nil
	}
	if t.emptyBut(Chain) {
		return []nfnl.Msg{t.delTable()}
	}
	var msgs []nfnl.Msg
	for _, ch := range t.chains {
		for _, r := range t.rules[ch.Name] {
			if ch.Name != Chain && jumpsTo(r, Chain) {
				msgs = append(msgs, nfnl.Msg{Type: unix.NFT_MSG_DELRULE, Family: t.family, What: fmt.Sprintf("deleting the jump to %s in %s", Chain, ch.Name),
					Attrs: nfnl.Attrs(
						netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: nfnl.Cstring(xtTable)},
						netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: nfnl.Cstring(ch.Name)},
						netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, r.Handle)},
					)})
			}
		}
	}
	return append(msgs, nfnl.Msg{Type: unix.NFT_MSG_DELCHAIN, Family: t.family, What: "deleting chain " + Chain,
		Attrs: nfnl.Attrs(
			netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: nfnl.Cstring(xtTable)},
			netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: nfnl.Cstring(Chain)},
		)})
}

func (t filterTable) delTable() nfnl.Msg {
	return nfnl.Msg{Type: unix.NFT_MSG_DELTABLE, Family: t.family, What: "deleting table filter",
		Attrs: nfnl.Attrs(netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: nfnl.Cstring(xtTable)})}
}

// readFilters reads both families' filter tables from nf_tables in the
// namespace. ok is false where the kernel has no nf_tables.
func readFilters(path string) (map[rules.Family]filterTable, bool, error) {
	c, err := nfnl.Open(path)
	if nfnl.NotSupported(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("netlink socket to nf_tables in %s: %w", path, fence.NftErr(err))
	}
	defer c.Close()
	out := map[rules.Family]filterTable{}
	for _, fam := range rules.Families {
		t, err := readFilter(c, fam)
		if nfnl.NotSupported(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading the %s filter table of nf_tables in %s: %w", fam, path, err)
		}
		out[fam] = t
	}
	return out, true, nil
}

// transact sends msgs in one transaction in the namespace at path.
func transact(path string, msgs []nfnl.Msg, what string) error {
	if len(msgs) == 0 {
		return nil
	}
	c, err := nfnl.Open(path)
	if err != nil {
		return fmt.Errorf("netlink socket to nf_tables in %s: %w", path, fence.NftErr(err))
	}
	defer c.Close()
	if _, err := c.Transact(msgs); err != nil {
		return fmt.Errorf("%s in %s: %w", what, path, fence.NftErr(err))
	}
	return nil
}

// removeFences takes the fences out of nf_tables in one transaction.
func removeFences(path string, tables map[rules.Family]filterTable) error {
	var msgs []nfnl.Msg
	for _, fam := range rules.Families {
		msgs = append(msgs, tables[fam].removal()...)
	}
	return transact(path, msgs, "removing chain "+Chain+" from the filter tables of nf_tables")
}

// dropEmptyFilterTables removes what the nf_tables variant of iptables
// leaves behind once our chain is gone: its first rule in a namespace
// creates the table "filter" with empty base chains, which would outlive
// the fence. A table goes only if nothing else is in it: no rules, no chain
// of anyone else, no set, no policy but accept. Legacy iptables has no such
// table, so this does nothing there. Both families go in one transaction,
// since the kernel makes each transaction that deletes a table wait for it
// to be freed.
//
// Between the check and the delete another program could add a rule to the
// table; in a namespace whose container is being created or removed, we
// accept that window.
func dropEmptyFilterTables(path string) error {
	tables, inNft, err := readFilters(path)
	if err != nil || !inNft {
		return err
	}
	var msgs []nfnl.Msg
	for _, fam := range rules.Families {
		if t := tables[fam]; t.emptyBut("") {
			msgs = append(msgs, t.delTable())
		}
	}
	return transact(path, msgs, "deleting the empty filter tables of nf_tables")
}

// hasLegacyTable tells whether legacy iptables has the family's filter
// table in the namespace: only then can a fence be there that nf_tables
// does not show. It must run inside the namespace (netns.In).
func hasLegacyTable(fam rules.Family) bool {
	name := "/proc/thread-self/net/ip_tables_names"
	if fam == rules.IPv6 {
		name = "/proc/thread-self/net/ip6_tables_names"
	}
	data, err := os.ReadFile(name)
	return err == nil && slices.Contains(strings.Fields(string(data)), "filter")
}
