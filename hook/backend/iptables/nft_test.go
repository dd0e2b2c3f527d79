// SPDX-License-Identifier: Apache-2.0

package iptables

import (
	"context"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/nfnl"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// rule is a dumped rule of chain with the expressions es.
func rule(t *testing.T, chain string, es ...expr.Any) nfnl.Rule {
	t.Helper()
	list := make([]netlink.Attribute, len(es))
	for i, e := range es {
		data, err := expr.Marshal(unix.NFPROTO_IPV4, e)
		if err != nil {
			t.Fatal(err)
		}
		list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: data}
	}
	r, err := nfnl.ParseRule(append([]byte{unix.NFPROTO_IPV4, 0, 0, 0}, nfnl.Attrs(
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: nfnl.Cstring(xtTable)},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: nfnl.Cstring(chain)},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nfnl.Attrs(list...)},
	)...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// One test of "a jump to our chain": a jump or a goto, as the last
// expression, whatever comes before it; and one test of the rule
// `-I OUTPUT 1 -j BYPASS-HOOK` stores.
func TestJumpsTo(t *testing.T) {
	jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: Chain}
	for _, tc := range []struct {
		name      string
		es        []expr.Any
		to, first bool
	}{
		{"counter, jump", []expr.Any{&expr.Counter{}, jump}, true, true},
		{"counter, goto", []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictGoto, Chain: Chain}}, true, false},
		{"a match, then the jump", []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Register: 1, Data: []byte{6}}, &expr.Counter{}, jump}, true, false},
		{"jump alone", []expr.Any{jump}, true, false},
		{"a jump elsewhere", []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: "OTHER"}}, false, false},
		{"accept", []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}, false, false},
		{"empty", nil, false, false},
	} {
		r := rule(t, "OUTPUT", tc.es...)
		if got := jumpsTo(r, Chain); got != tc.to {
			t.Errorf("%s: jumpsTo = %v, want %v", tc.name, got, tc.to)
		}
		if got := onlyJumpsTo(r, Chain); got != tc.first {
			t.Errorf("%s: onlyJumpsTo = %v, want %v", tc.name, got, tc.first)
		}
	}
}

// What Remove takes out of a table: the whole table where it holds only
// our chain, the jumps to it and empty base chains that accept; else each
// jump (a goto too) and our chain, leaving the rest.
func TestRemoval(t *testing.T) {
	accept := uint32(nfAccept)
	drop := uint32(0)
	out := nfnl.Chain{Table: xtTable, Name: "OUTPUT", Type: "filter", Hooked: true, Hooknum: unix.NF_INET_LOCAL_OUT, Policy: &accept}
	ours := nfnl.Chain{Table: xtTable, Name: Chain}
	jump := rule(t, "OUTPUT", &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: Chain})
	gotoRule := rule(t, "OUTPUT", &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictGoto, Chain: Chain})
	other := rule(t, "OUTPUT", &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})
	dropOut := out
	dropOut.Policy = &drop
	kinds := func(msgs []nfnl.Msg) string {
		var s []string
		for _, m := range msgs {
			s = append(s, m.What)
		}
		return strings.Join(s, ", ")
	}
	for _, tc := range []struct {
		name string
		t    filterTable
		want string
	}{
		{"no fence", filterTable{found: true, chains: []nfnl.Chain{out}}, ""},
		{"alone", filterTable{found: true, chains: []nfnl.Chain{out, ours}, rules: map[string][]nfnl.Rule{"OUTPUT": {jump}}}, "deleting table filter"},
		{"alone, reached by a goto", filterTable{found: true, chains: []nfnl.Chain{out, ours}, rules: map[string][]nfnl.Rule{"OUTPUT": {gotoRule}}}, "deleting table filter"},
		{"another rule", filterTable{found: true, chains: []nfnl.Chain{out, ours}, rules: map[string][]nfnl.Rule{"OUTPUT": {gotoRule, other, jump}}},
			"deleting the jump to BYPASS-HOOK in OUTPUT, deleting the jump to BYPASS-HOOK in OUTPUT, deleting chain BYPASS-HOOK"},
		{"a policy of drop", filterTable{found: true, chains: []nfnl.Chain{dropOut, ours}, rules: map[string][]nfnl.Rule{"OUTPUT": {jump}}},
			"deleting the jump to BYPASS-HOOK in OUTPUT, deleting chain BYPASS-HOOK"},
		{"a set", filterTable{found: true, sets: 1, chains: []nfnl.Chain{out, ours}, rules: map[string][]nfnl.Rule{"OUTPUT": {jump}}},
			"deleting the jump to BYPASS-HOOK in OUTPUT, deleting chain BYPASS-HOOK"},
	} {
		if got := kinds(tc.t.removal()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if !(filterTable{found: true, chains: []nfnl.Chain{out}}).emptyBut("") {
		t.Error("a table with one empty base chain that accepts is not empty")
	}
	if (filterTable{found: true, chains: []nfnl.Chain{out}, rules: map[string][]nfnl.Rule{"OUTPUT": {other}}}).emptyBut("") {
		t.Error("a table with a rule is empty")
	}
}

// OUTPUT's jump turned into a goto: Inspect sees the fence there, not whole
// (the first rule is not the jump), and Remove takes it out; on main the
// reader of Inspect took a goto for no jump (the fence gone) while Remove's
// took it for one.
func TestGotoIsSeenAndRemoved(t *testing.T) {
	testnet.RequireTools(t, "nft")
	testnet.RequireRoot(t)
	b, err := New()
	if err != nil {
		testnet.SkipOrFail(t, "%v", err)
	}
	ns, tns := testNetns(t)
	before := rulesIn(t, tns)
	if err := b.Install(ns, iptablesRules(t)); err != nil {
		t.Fatal(err)
	}
	cmd := tns.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader("flush chain ip filter OUTPUT\nadd rule ip filter OUTPUT counter goto " + Chain + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	seen, err := b.Inspect(ns)
	if err != nil {
		t.Fatal(err)
	}
	if !seen.Present || !strings.Contains(seen.Problem, "ipv4: OUTPUT's first rule is not the jump") {
		t.Errorf("after the goto: %+v; want present, with OUTPUT's first rule named", seen)
	}
	if err := b.Remove(ns); err != nil {
		t.Fatal(err)
	}
	if after := rulesIn(t, tns); after != before {
		t.Errorf("remove did not leave the namespace as it was:\n%s", testnet.Diff(before, after))
	}
	tables, _, err := readFilters(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range rules.Families {
		if tables[fam].hasFence() {
			t.Errorf("%s: chain %s left", fam, Chain)
		}
	}
}
