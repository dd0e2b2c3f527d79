// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func inet(attrs ...netlink.Attribute) []byte {
	return append([]byte{unix.NFPROTO_INET, 0, 0, 0}, Attrs(attrs...)...)
}

func marshal(t testing.TB, e expr.Any) []byte {
	t.Helper()
	data, err := expr.Marshal(unix.NFPROTO_INET, e)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func ruleMsg(exprs ...[]byte) []byte {
	list := make([]netlink.Attribute, len(exprs))
	for i, e := range exprs {
		list[i] = netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: e}
	}
	return inet(
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: Cstring("t")},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: Cstring("c")},
		netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, 42)},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: Attrs(list...)},
		netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: userdata.AppendString(nil, userdata.TypeComment, "ipv6 proxy")},
	)
}

// A rule message as the kernel sends it is read back to where it is, its
// comment and expressions; a counter's values stay out of its digest line
// and are its packets, every other expression's attributes are in the line.
func TestParseRule(t *testing.T) {
	verdict := marshal(t, &expr.Verdict{Kind: expr.VerdictAccept})
	r, err := ParseRule(ruleMsg(marshal(t, &expr.Counter{Packets: 7, Bytes: 700}), verdict))
	if err != nil {
		t.Fatal(err)
	}
	if r.Table != "t" || r.Chain != "c" || r.Handle != 42 || r.Comment != "ipv6 proxy" || len(r.Exprs) != 2 || r.Exprs[0].Name != "counter" || r.Exprs[1].Name != "immediate" {
		t.Fatalf("parsed %+v", r)
	}
	if r.Packets() != 7 {
		t.Errorf("packets %d, want 7", r.Packets())
	}
	line := r.Line("proxy")
	if !strings.HasPrefix(line, "proxy counter immediate:") {
		t.Errorf("line %q", line)
	}
	r2, err := ParseRule(ruleMsg(marshal(t, &expr.Counter{Packets: 9}), verdict))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Line("proxy") != line {
		t.Errorf("the counter's values changed the line: %q, %q", r2.Line("proxy"), line)
	}

	for name, bad := range map[string][]byte{
		"short header":        {1, 0},
		"attribute too long":  {1, 0, 0, 0, 200, 0, 1, 0, 'x', 0, 0, 0},
		"attribute too short": {1, 0, 0, 0, 2, 0, 1, 0},
		"truncated":           {1, 0, 0, 0, 8, 0},
		"handle not 64 bits":  inet(netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: []byte{1}}),
	} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A jump and a goto are told apart, and both from other verdicts and other
// expressions.
func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		e     expr.Any
		code  int32
		chain string
		ok    bool
	}{
		{&expr.Verdict{Kind: expr.VerdictJump, Chain: "X"}, unix.NFT_JUMP, "X", true},
		{&expr.Verdict{Kind: expr.VerdictGoto, Chain: "Y"}, unix.NFT_GOTO, "Y", true},
		{&expr.Verdict{Kind: expr.VerdictAccept}, 1 /* NF_ACCEPT */, "", true},
		{&expr.Counter{}, 0, "", false},
		{&expr.Immediate{Register: 1, Data: []byte{1, 2, 3, 4}}, 0, "", false},
	} {
		r, err := ParseRule(ruleMsg(marshal(t, tc.e)))
		if err != nil {
			t.Fatal(err)
		}
		code, chain, ok := r.Exprs[0].Verdict()
		if code != tc.code || chain != tc.chain || ok != tc.ok {
			t.Errorf("%T %+v: %d %q %v, want %d %q %v", tc.e, tc.e, code, chain, ok, tc.code, tc.chain, tc.ok)
		}
	}
}

func TestParseChain(t *testing.T) {
	msg := inet(
		netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: Cstring("t")},
		netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: Cstring("c")},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: Attrs(
			netlink.Attribute{Type: unix.NFTA_HOOK_HOOKNUM, Data: []byte{0, 0, 0, 3}},
			netlink.Attribute{Type: unix.NFTA_HOOK_PRIORITY, Data: []byte{0xff, 0xff, 0xff, 0xff}},
		)},
		netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: []byte{0, 0, 0, 1}},
		netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: Cstring("filter")},
	)
	c, err := ParseChain(msg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Table != "t" || c.Name != "c" || !c.Hooked || c.Hooknum != 3 || c.Priority != -1 || c.Type != "filter" || c.Policy == nil || *c.Policy != 1 {
		t.Errorf("parsed %+v", c)
	}
	if _, err := ParseChain(inet(netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: []byte{1}})); err == nil {
		t.Error("a policy of one byte must be an error")
	}
}

func TestParseTable(t *testing.T) {
	tb, err := ParseTable(inet(
		netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: Cstring("filter")},
		netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 1}},
	))
	if err != nil || tb.Name != "filter" || tb.Flags != 1 {
		t.Errorf("parsed %+v, %v", tb, err)
	}
	if _, err := ParseTable(inet(netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{1, 2}})); err == nil {
		t.Error("flags of two bytes must be an error")
	}
}

// Echoes are asked for only where they fit the receive buffer the socket
// got, EchoBytesPerRule a rule, and never for more than MaxEchoedRules.
func TestEchoFits(t *testing.T) {
	for _, tc := range []struct {
		rcvbuf, rules int
		want          bool
	}{
		{212992, 100, true},
		{212992, 104, true},
		{212992, 105, false},
		{425984, 200, true},
		{16 << 20, MaxEchoedRules, true},
		{16 << 20, MaxEchoedRules + 1, false},
		{0, 1, false},
	} {
		c := &Conn{rcvbuf: tc.rcvbuf}
		if got := c.EchoFits(tc.rules); got != tc.want {
			t.Errorf("%d rules, a buffer of %d: %v, want %v", tc.rules, tc.rcvbuf, got, tc.want)
		}
	}
}
