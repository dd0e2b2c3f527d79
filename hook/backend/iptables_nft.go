// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// The nf_tables variant of iptables (Debian's default) keeps its rules in
// nf_tables: per family, the table "filter" holds our chain and OUTPUT's
// jump to it. Poststop reads the fence's counters and removes it there, over
// netlink and in one transaction for both families, rather than running
// iptables-save and iptables-restore once per family each. That saves four
// processes and, above all, two of three waits: every transaction that
// deletes makes the closing of its netlink socket wait for an RCU grace
// period (8 to 32 ms here), and the tools' two removals and the cleanup of
// the empty tables were three transactions. Legacy iptables keeps its rules
// in x_tables, which only the tools reach.

// xtFence is what nf_tables holds of the iptables fence in one family.
type xtFence struct {
	table *nftables.Table
	chain *nftables.Chain  // ours; nil when nf_tables has no chain of ours
	rules []*nftables.Rule // our chain's, in order
	jumps []*nftables.Rule // rules of other chains that jump to ours
	// alone: the table holds nothing but our chain, the jumps to it and
	// empty base chains that accept, as iptables-nft leaves it. Then the
	// whole table goes, rather than being left behind empty.
	alone bool
}

func tableFamily(fam rules.Family) nftables.TableFamily {
	if fam == rules.IPv6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

// readXtFence finds our chain in the family's table "filter".
func readXtFence(c *nftables.Conn, fam rules.Family) (xtFence, error) {
	var f xtFence
	tables, err := c.ListTablesOfFamily(tableFamily(fam))
	if err != nil {
		return f, err
	}
	for _, t := range tables {
		if t.Name == "filter" {
			f.table = t
		}
	}
	if f.table == nil {
		return f, nil
	}
	chains, err := c.ListChainsOfTableFamily(tableFamily(fam))
	if err != nil {
		return f, err
	}
	f.alone = true
	for _, ch := range chains {
		if ch.Table.Name != f.table.Name {
			continue
		}
		rs, err := c.GetRules(f.table, ch)
		if err != nil {
			return f, err
		}
		if ch.Name == Chain {
			f.chain, f.rules = ch, rs
			continue
		}
		if ch.Hooknum == nil || (ch.Policy != nil && *ch.Policy != nftables.ChainPolicyAccept) {
			f.alone = false // a chain of someone else, or a policy that is not the default
		}
		// Any chain's jump to ours goes with it: the kernel refuses to
		// delete a chain that is jumped to.
		for _, r := range rs {
			if jumpsToUs(r) {
				f.jumps = append(f.jumps, r)
			} else {
				f.alone = false
			}
		}
	}
	if f.chain == nil {
		return xtFence{}, nil
	}
	if f.alone {
		sets, err := c.GetSets(f.table)
		if err != nil {
			return f, err
		}
		f.alone = len(sets) == 0
	}
	return f, nil
}

// jumpsToUs tells a rule that does nothing but count and jump to our chain,
// as `-I OUTPUT 1 -j BYPASS-HOOK` renders.
func jumpsToUs(r *nftables.Rule) bool {
	jump := false
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Counter:
		case *expr.Verdict:
			jump = (e.Kind == expr.VerdictJump || e.Kind == expr.VerdictGoto) && e.Chain == Chain
		default:
			return false
		}
	}
	return jump
}

// packets is each rule's packet counter; iptables-nft gives every rule one.
func (f xtFence) packets() []uint64 {
	out := make([]uint64, len(f.rules))
	for i, r := range f.rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				out[i] = ctr.Packets
			}
		}
	}
	return out
}

// readXtFences reads both families' fences from nf_tables in the namespace.
// ok is false where the kernel has no nf_tables.
func readXtFences(path string) (map[rules.Family]xtFence, bool, error) {
	c, done, err := nftConn(path)
	if noNftables(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer done()
	out := map[rules.Family]xtFence{}
	for _, fam := range rules.Families {
		f, err := readXtFence(c, fam)
		if noNftables(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading the %s filter table of nf_tables in %s: %w", fam, path, err)
		}
		out[fam] = f
	}
	return out, true, nil
}

// removeXtFences takes the fences out of nf_tables in one transaction:
// the whole table where it holds nothing else, else the jumps and our chain
// (with its rules).
func removeXtFences(path string, fences map[rules.Family]xtFence) error {
	c, done, err := nftConn(path)
	if err != nil {
		return err
	}
	defer done()
	any := false
	for _, fam := range rules.Families {
		f := fences[fam]
		switch {
		case f.chain == nil:
			continue
		case f.alone:
			c.DelTable(f.table)
		default:
			for _, j := range f.jumps {
				if err := c.DelRule(j); err != nil {
					return err
				}
			}
			c.DelChain(f.chain)
		}
		any = true
	}
	if !any {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing chain %s from the filter tables of nf_tables in %s: %w", Chain, path, nftErr(err))
	}
	return nil
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
