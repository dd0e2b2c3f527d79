// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// xtSeen is what the kernel's dumps show of the iptables fence of one
// family in nf_tables. It is read raw, every expression with its
// attributes, rather than through the library, which drops an expression
// it does not know: a rule with one more expression (one that never
// matches, say) would then look unchanged.
type xtSeen struct {
	found    bool     // nf_tables has our chain
	jump     bool     // OUTPUT jumps to it
	problems []string // what keeps it from being whole, apart from its rules
	sum      string   // the digest of our chain's rules
}

// xtTable is the table of each family where iptables-nft keeps the filter
// table's chains.
const xtTable = "filter"

// inspectXt reads the fence of fam ("filter" table, chains OUTPUT and ours)
// from nf_tables: four dumps on s.
func inspectXt(s *nfSock, fam rules.Family) (xtSeen, error) {
	var seen xtSeen
	pf := byte(tableFamily(fam))
	flags, found, err := s.tableFlags(pf, xtTable)
	if err != nil || !found {
		return seen, err
	}
	chains, err := s.dump(unix.NFT_MSG_GETCHAIN, pf, nil)
	if err != nil {
		return seen, err
	}
	var output *nfChain
	for _, m := range chains {
		ch, err := parseNfChain(m)
		if err != nil {
			return seen, err
		}
		switch {
		case ch.table != xtTable:
		case ch.name == Chain:
			seen.found = true
		case ch.name == "OUTPUT":
			output = &ch
		}
	}
	if !seen.found {
		return seen, nil
	}
	ours, err := xtChainRules(s, pf, Chain)
	if err != nil {
		return seen, err
	}
	lines := make([]string, len(ours))
	for i, r := range ours {
		lines[i] = r.line("")
	}
	seen.sum = digest(lines)
	if output == nil {
		return seen, nil
	}
	out, err := xtChainRules(s, pf, "OUTPUT")
	if err != nil {
		return seen, err
	}
	for _, r := range out {
		seen.jump = seen.jump || r.endsInJumpTo(Chain)
	}
	if !seen.jump {
		return seen, nil
	}
	if !out[0].onlyJumpsTo(Chain) {
		seen.problems = append(seen.problems, fmt.Sprintf("%s: OUTPUT's first rule is not the jump to %s", fam, Chain))
	}
	// At filter's priority (0), after nat's (-100): moved in front of nat,
	// the fence would see a destination that a DNAT then changes.
	if !output.hooked || output.hooknum != unix.NF_INET_LOCAL_OUT || output.typ != "filter" || output.priority != 0 {
		seen.problems = append(seen.problems, fmt.Sprintf("%s: chain OUTPUT of table filter is not a filter chain on the output hook at priority 0", fam))
	}
	if flags != 0 {
		seen.problems = append(seen.problems, fmt.Sprintf("%s: table filter has flags %#x (dormant: its rules do nothing)", fam, flags))
	}
	return seen, nil
}

// xtChainRules dumps the rules of one chain of the family's filter table.
func xtChainRules(s *nfSock, pf byte, chain string) ([]nfRule, error) {
	msgs, err := s.dump(unix.NFT_MSG_GETRULE, pf, mustAttrs([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(xtTable)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring(chain)},
	}))
	if err != nil {
		return nil, err
	}
	out := make([]nfRule, len(msgs))
	for i, m := range msgs {
		if out[i], err = parseNfRule(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// onlyJumpsTo tells a rule that does nothing but count and jump to chain,
// as `-I OUTPUT 1 -j BYPASS-HOOK` is stored: a counter, then an immediate
// verdict, and no other expression.
func (r nfRule) onlyJumpsTo(chain string) bool {
	return len(r.exprs) == 2 && r.exprs[0].name == "counter" && r.endsInJumpTo(chain)
}

// endsInJumpTo tells a rule whose last expression is a jump to chain,
// whatever comes before it.
func (r nfRule) endsInJumpTo(chain string) bool {
	if len(r.exprs) == 0 || r.exprs[len(r.exprs)-1].name != "immediate" {
		return false
	}
	var code uint32
	var target string
	err := nlAttrs(r.exprs[len(r.exprs)-1].data, func(typ uint16, data []byte) error {
		if typ != unix.NFTA_IMMEDIATE_DATA {
			return nil
		}
		return nlAttrs(data, func(typ uint16, data []byte) error {
			if typ != unix.NFTA_DATA_VERDICT {
				return nil
			}
			return nlAttrs(data, func(typ uint16, data []byte) error {
				var err error
				switch typ {
				case unix.NFTA_VERDICT_CODE:
					code, err = nlUint32(data)
				case unix.NFTA_VERDICT_CHAIN:
					target = nlString(data)
				}
				return err
			})
		})
	})
	return err == nil && int32(code) == unix.NFT_JUMP && target == chain
}
