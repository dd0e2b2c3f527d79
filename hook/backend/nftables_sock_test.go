// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// A rule message as the kernel sends it is read back to its comment and
// expressions; a counter's values stay out of its digest line, every other
// expression's attributes are in it.
func TestParseNfRule(t *testing.T) {
	counter, err := expr.Marshal(byte(unix.NFPROTO_INET), &expr.Counter{Packets: 7, Bytes: 700})
	if err != nil {
		t.Fatal(err)
	}
	verdict, err := expr.Marshal(byte(unix.NFPROTO_INET), &expr.Verdict{Kind: expr.VerdictAccept})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(counter []byte) []byte {
		return append([]byte{unix.NFPROTO_INET, 0, 0, 0}, mustAttrs([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: cstring(NftTable)},
			{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: mustAttrs([]netlink.Attribute{
				{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: counter},
				{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: verdict},
			})},
			{Type: unix.NFTA_RULE_USERDATA, Data: userdata.AppendString(nil, userdata.TypeComment, "ipv6 proxy")},
		})...)
	}
	r, err := parseNfRule(msg(counter))
	if err != nil {
		t.Fatal(err)
	}
	if r.comment != "ipv6 proxy" || len(r.exprs) != 2 || r.exprs[0].name != "counter" || r.exprs[1].name != "immediate" {
		t.Fatalf("parsed %+v", r)
	}
	line := r.line("proxy")
	if !strings.HasPrefix(line, "proxy counter immediate:") {
		t.Errorf("line %q", line)
	}
	other, err := expr.Marshal(byte(unix.NFPROTO_INET), &expr.Counter{Packets: 9})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := parseNfRule(msg(other))
	if err != nil {
		t.Fatal(err)
	}
	if r2.line("proxy") != line {
		t.Errorf("the counter's values changed the line: %q, %q", r2.line("proxy"), line)
	}

	for name, bad := range map[string][]byte{
		"short header":        {1, 0},
		"attribute too long":  {1, 0, 0, 0, 200, 0, 1, 0, 'x', 0, 0, 0},
		"attribute too short": {1, 0, 0, 0, 2, 0, 1, 0},
		"truncated":           {1, 0, 0, 0, 8, 0},
	} {
		if _, err := parseNfRule(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseNfChain(t *testing.T) {
	policy := make([]byte, 4)
	binary.BigEndian.PutUint32(policy, 1)
	msg := append([]byte{unix.NFPROTO_INET, 0, 0, 0}, mustAttrs([]netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstring(NftTable)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstring(NftChain)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: mustAttrs([]netlink.Attribute{
			{Type: unix.NFTA_HOOK_HOOKNUM, Data: []byte{0, 0, 0, 3}},
			{Type: unix.NFTA_HOOK_PRIORITY, Data: []byte{0xff, 0xff, 0xff, 0xff}},
		})},
		{Type: unix.NFTA_CHAIN_POLICY, Data: policy},
		{Type: unix.NFTA_CHAIN_TYPE, Data: cstring("filter")},
	})...)
	c, err := parseNfChain(msg)
	if err != nil {
		t.Fatal(err)
	}
	if c.table != NftTable || c.name != NftChain || !c.hooked || c.hooknum != 3 || c.priority != -1 || c.typ != "filter" || c.policy == nil || *c.policy != 1 {
		t.Errorf("parsed %+v", c)
	}
	if _, err := parseNfChain(append([]byte{1, 0, 0, 0}, mustAttrs([]netlink.Attribute{{Type: unix.NFTA_CHAIN_POLICY, Data: []byte{1}}})...)); err == nil {
		t.Error("a policy of one byte must be an error")
	}
}

// The digest the create path takes from the kernel's echo of each rule is
// the one Inspect reads back later, for every rule set the model makes, on a
// fresh install and on a replacement: otherwise every fence would look
// changed to status, check, the monitor and the next container.
func TestNftEchoDigestIsInspectDigest(t *testing.T) {
	var sets []rules.RuleSet
	for _, y := range []string{
		"proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\ndns: [198.51.100.53]\nallowUids: [1337]\n",
		"proxies: ['198.51.100.1:3128']\nmode: audit\nlog: {target: nflog, group: 7, rate: 2/minute, burst: 4}\nallow: [{cidr: 198.51.100.0/25, ports: [53, 80], protocol: udp}]\n",
		"proxies: ['[2001:db8:1::1]:3128']\nlog: {target: kernel, prefix: x-y}\n",
	} {
		cfg, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		d, err := cfg.Decide(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, feat := range []rules.Features{rules.AllFeatures, {Conntrack: true}, {Log: true}, {}} {
			sets = append(sets, rules.NewRuleSet(d.Policy, "0123456789abcdef", feat))
		}
	}
	h, _ := testNetns(t)
	b := &Nftables{}
	for i, rs := range sets {
		// The first install is fresh; every later one replaces the table.
		if err := b.Install(h, rs); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		echoed, err := ReadBack(b, h)
		if err != nil {
			t.Fatal(err)
		}
		seen, err := b.Inspect(h)
		if err != nil {
			t.Fatal(err)
		}
		if whole, why := seen.Whole(echoed); !whole {
			t.Errorf("set %d (%d rules): the echoed digests are not those read back: %s", i, rs.Count(), why)
		}
		if echoed[rules.IPv4] == echoed[rules.IPv6] && len(rs[rules.IPv4]) != len(rs[rules.IPv6]) {
			t.Errorf("set %d: one digest for both families", i)
		}
	}
}

// A batch with a failing message is refused whole, and the error names the
// message that failed.
func TestNfSockBatchIsAllOrNothing(t *testing.T) {
	h, _ := testNetns(t)
	s, err := openNfSock(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ruleMsgs, err := nftRuleMsgs(rules.RuleSet{rules.IPv4: {{Name: "x", Action: rules.Accept}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	bad := ruleMsgs[0]
	bad.attrs = mustAttrs([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(NftTable)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring("no-such-chain")},
	})
	bad.what = "the rule for no chain"
	_, err = s.transact(append(nftBatch(ruleMsgs, false), bad, ruleMsgs[0]))
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "the rule for no chain") {
		t.Fatalf("got %v, want ENOENT naming the rule", err)
	}
	tables, err := s.dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_UNSPEC, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Errorf("%d tables after a refused batch, want none", len(tables))
	}
	// The socket still works, and an answer to the refused batch still
	// queued is not taken for this one's.
	if _, err := s.transact(nftBatch(ruleMsgs, false)); err != nil {
		t.Fatalf("a good batch after a refused one: %v", err)
	}
}

// A batch whose messages all pass but whose commit fails (an anonymous set
// that no rule binds: nf_tables_commit refuses it) is a refused batch, not
// an error of its first message, and leaves nothing behind.
func TestNfSockCommitFailure(t *testing.T) {
	h, _ := testNetns(t)
	s, err := openNfSock(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	set := attrs(
		attr{unix.NFTA_SET_TABLE, cstring("t")},
		attr{unix.NFTA_SET_NAME, cstring("__set%d")},
		attr{unix.NFTA_SET_FLAGS, be32(unix.NFT_SET_ANONYMOUS | unix.NFT_SET_CONSTANT)},
		attr{unix.NFTA_SET_KEY_LEN, be32(4)},
		attr{unix.NFTA_SET_ID, be32(1)},
	)
	_, err = s.transact([]nfMsg{
		{typ: unix.NFT_MSG_NEWTABLE, flags: unix.NLM_F_CREATE, fam: unix.NFPROTO_INET, attrs: attrs(attr{unix.NFTA_TABLE_NAME, cstring("t")}), what: "the table"},
		{typ: unix.NFT_MSG_NEWSET, flags: unix.NLM_F_CREATE, fam: unix.NFPROTO_INET, attrs: set, what: "the set"},
	})
	if !errors.Is(err, errBatchRefused) || strings.Contains(err.Error(), "the table") {
		t.Errorf("got %v; want the batch refused, not the table blamed", err)
	}
	tables, derr := s.dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_UNSPEC, nil)
	if derr != nil || len(tables) != 0 {
		t.Errorf("%d tables (%v) after a failed commit, want none", len(tables), derr)
	}
}

// A rule set too large for its echoes to be sure to fit the socket's queue
// is installed without them and read back instead; its digest is the one
// Inspect reads.
func TestNftLargeRuleSetIsReadBack(t *testing.T) {
	var allow []rules.Rule
	for i := range maxEchoedRules + 100 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		allow = append(allow, rules.Rule{Name: "allow", Proto: rules.ProtoTCP, Dst: netip.PrefixFrom(a, 32), DPort: uint16(1000 + i), Action: rules.Accept})
	}
	rs := rules.RuleSet{rules.IPv4: allow}
	h, _ := testNetns(t)
	b := &Nftables{}
	if err := b.Install(h, rs); err != nil {
		t.Fatal(err)
	}
	if _, echoed := b.installedDigests(h.Path); echoed {
		t.Errorf("%d rules were echoed; want them read back", len(allow))
	}
	sums, err := ReadBack(b, h)
	if err != nil {
		t.Fatal(err)
	}
	seen, err := b.Inspect(h)
	if err != nil {
		t.Fatal(err)
	}
	if whole, why := seen.Whole(sums); !whole {
		t.Errorf("not whole right after the install: %s", why)
	}
}

// Echoes are asked for only where they fit the receive buffer the socket
// got, 2 KB a rule, and never for more than maxEchoedRules rules.
func TestEchoFits(t *testing.T) {
	for _, tc := range []struct {
		rcvbuf, rules int
		want          bool
	}{
		{212992, 100, true},
		{212992, 104, true},
		{212992, 105, false}, // 149 rules fit this buffer, 169 did not
		{425984, 200, true},
		{16 << 20, maxEchoedRules, true},
		{16 << 20, maxEchoedRules + 1, false},
		{0, 1, false},
	} {
		s := &nfSock{rcvbuf: tc.rcvbuf}
		if got := s.echoFits(tc.rules); got != tc.want {
			t.Errorf("%d rules, a buffer of %d: %v, want %v", tc.rules, tc.rcvbuf, got, tc.want)
		}
	}
}
