// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testpolicy"
)

// nftnlConfigs spread over what the model renders: both families, allow
// entries with whole-byte, partial-byte and empty prefixes, DNS, uids, both
// log targets, limits that iptables-nft stores in another unit, the longest
// prefix, other protocols accepted.
var nftnlConfigs = []string{
	`proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']
dns: [198.51.100.53, 2001:db8::53]
allowUids: [1337, 0]
allow: [{cidr: 198.51.100.0/24, ports: [443, 8443], protocol: tcp}, {cidr: 198.51.96.0/20}, {cidr: 198.51.100.64/31, ports: [7]},
  {cidr: 2001:db8:9::/48}, {cidr: '2001:db8::/33', protocol: udp}, {cidr: '2001:db8::2/127', ports: [53]}]
`,
	`proxies: ['198.51.100.1:3128']
otherProtocols: accept
log: {target: nflog, group: 99, prefix: bh, rate: 24/day, burst: 3}
`,
	`proxies: ['[2001:db8:1::1]:3128']
allow: [{cidr: 0.0.0.0/0, ports: [443]}, {cidr: '::/0', protocol: tcp}, {cidr: 198.51.100.7/32}]
log: {prefix: abcdefghijklmn, rate: 999999/day, burst: 10000}
`,
	`proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']
dns: [198.51.100.53]
allowUids: [4294967294]
log: {target: nflog, group: 0, prefix: x.y_z-1, rate: 60/minute, burst: 1}
otherProtocols: accept
`,
	`proxies: ['198.51.100.1:65535']
log: {rate: 7/hour, burst: 1}
`,
}

// nftnlRuleSets is every rule set of nftnlConfigs: each mode, each set of
// features, and the log rules with and without --log-uid.
func nftnlRuleSets(t *testing.T) map[string]rules.RuleSet {
	out := map[string]rules.RuleSet{}
	for i, y := range nftnlConfigs {
		for _, mode := range []string{config.ModeEnforce, config.ModeAudit} {
			p := testpolicy.Policy(t, y+"mode: "+mode+"\n")
			for _, feat := range []rules.Features{rules.AllFeatures, {Conntrack: true}, {Log: true}, {}} {
				for _, logUID := range []bool{true, false} {
					rs := rules.NewRuleSet(p, "0123456789abcdef0123", feat)
					if !logUID {
						if !feat.Log {
							continue
						}
						for _, fam := range rules.Families {
							for j, r := range rs[fam] {
								if r.Log != nil {
									l := *r.Log
									l.LogUID = false
									rs[fam][j].Log = &l
								}
							}
						}
					}
					out[fmt.Sprintf("config%d/%s/conntrack=%v,log=%v/loguid=%v", i, mode, feat.Conntrack, feat.Log, logUID)] = rs
				}
			}
		}
	}
	return out
}

// nftnlHost returns the host's tools, or skips: the netlink path is only
// for iptables-nft 1.8.9.
func nftnlHost(t *testing.T) *Iptables {
	t.Helper()
	testnet.RequireRoot(t)
	b, err := NewIptables()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if !nftVariant(b.Dir) {
		t.Skipf("skipping: the iptables-restore tools in %s are not iptables-nft %s, so the hook runs them and writes nothing itself", b.Dir, nftnlVersion)
	}
	return b
}

// installTools is Install's fresh path with the tools: one
// iptables-restore batch per family.
func installTools(t *testing.T, b *Iptables, ns netns.Handle, rs rules.RuleSet) {
	t.Helper()
	err := netns.In(ns.Path, func() error {
		for _, fam := range rules.Families {
			if err := b.restore(fam, installBatch(ruleLines(fam, rs[fam]), false, false)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("installing with the tools: %v", err)
	}
}

func installNetlink(t *testing.T, b *Iptables, ns netns.Handle, rs rules.RuleSet) {
	t.Helper()
	execs := b.Execs
	done, err := b.installNftnl(ns, rs)
	if !done || err != nil {
		t.Fatalf("installing over netlink: done %v, %v", done, err)
	}
	if b.Execs != execs {
		t.Fatalf("installing over netlink ran %d tools", b.Execs-execs)
	}
}

// THE test: for every rule set, what the tools make in one namespace and
// what installNftnl makes in another are the same nf_tables objects, byte
// for byte (the kernel's own dump of tables, chains and rules, only handles
// left out and counters zeroed), and iptables-save shows the same.
func TestNftnlSameAsTools(t *testing.T) {
	b := nftnlHost(t)
	sets := nftnlRuleSets(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range sets {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		rs := sets[name]
		t.Run(name, func(t *testing.T) {
			a, ta := testNetns(t)
			n, tn := testNetns(t)
			installTools(t, b, a, rs)
			installNetlink(t, b, n, rs)
			if want, got := nftDump(t, a.Path), nftDump(t, n.Path); want != got {
				t.Errorf("nf_tables objects differ (- tools, + netlink):\n%s", testnet.Diff(want, got))
			}
			for _, tool := range []string{"iptables-save", "ip6tables-save"} {
				want := saveOf(t, ta, b.Dir+"/"+tool)
				if got := saveOf(t, tn, b.Dir+"/"+tool); want != got {
					t.Errorf("%s differs (- tools, + netlink):\n%s", tool, testnet.Diff(want, got))
				}
			}
		})
	}
}

func saveOf(t *testing.T, ns *testnet.Netns, tool string) string {
	var b strings.Builder
	for _, l := range strings.Split(ns.Exec(t, tool, "-t", "filter"), "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// nftDump renders the ip and ip6 tables, chains and rules of the namespace
// from the kernel's dumps, attribute by attribute in hex (handles and rule
// positions left out, counters zeroed), each rule followed by its
// expressions as google/nftables reads and marshals them, for a readable
// diff.
func nftDump(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, fam := range rules.Families {
		tf := tableFamily(fam)
		for _, obj := range []struct {
			name string
			msg  uint16
			skip []uint16
		}{
			{"table", unix.NFT_MSG_GETTABLE, []uint16{4 /* NFTA_TABLE_HANDLE */}},
			{"chain", unix.NFT_MSG_GETCHAIN, []uint16{unix.NFTA_CHAIN_HANDLE}},
			{"rule", unix.NFT_MSG_GETRULE, []uint16{unix.NFTA_RULE_HANDLE, unix.NFTA_RULE_POSITION}},
		} {
			msgs, err := c.Execute(netlink.Message{
				Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | obj.msg), Flags: netlink.Request | netlink.Dump},
				Data:   []byte{byte(tf), unix.NFNETLINK_V0, 0, 0},
			})
			if err != nil {
				t.Fatalf("dumping %s %ss: %v", fam, obj.name, err)
			}
			for _, m := range msgs {
				as, err := netlink.UnmarshalAttributes(m.Data[4:])
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s %s flags=%#x:\n", fam, obj.name, m.Header.Flags)
				for _, a := range as {
					if slices.Contains(obj.skip, a.Type&^unix.NLA_F_NESTED) {
						continue
					}
					data := a.Data
					if obj.msg == unix.NFT_MSG_GETRULE && a.Type&^unix.NLA_F_NESTED == unix.NFTA_RULE_EXPRESSIONS {
						data = zeroCounters(t, data)
					}
					fmt.Fprintf(&b, "  %#x %s\n", a.Type, hex.EncodeToString(data))
				}
			}
		}
		chains, err := nc.ListChainsOfTableFamily(tf)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			fmt.Fprintf(&b, "%s chain %s %s: type %q hook %v priority %v policy %v\n", fam, ch.Table.Name, ch.Name, ch.Type, deref(ch.Hooknum), deref(ch.Priority), deref(ch.Policy))
			rs, err := nc.GetRules(ch.Table, ch)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range rs {
				fmt.Fprintf(&b, "  rule %d userdata %x\n", i, r.UserData)
				for _, e := range r.Exprs {
					if _, ok := e.(*expr.Counter); ok {
						e = &expr.Counter{}
					}
					data, err := expr.Marshal(byte(tf), e)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Fprintf(&b, "    %T %x\n", e, data)
				}
			}
		}
	}
	return b.String()
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// zeroCounters zeroes the data of the counter expressions in a rule's
// NFTA_RULE_EXPRESSIONS.
func zeroCounters(t *testing.T, data []byte) []byte {
	elems, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		t.Fatal(err)
	}
	for i, el := range elems {
		as, err := netlink.UnmarshalAttributes(el.Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) == 2 && bytes.Equal(as[0].Data, []byte("counter\x00")) {
			as[1].Data = bytes.Repeat([]byte{0}, len(as[1].Data))
			if elems[i].Data, err = netlink.MarshalAttributes(as); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := netlink.MarshalAttributes(elems)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// After a netlink install, the tools and the backend work on the fence as
// on one the tools made: Installed and Counters read it, a user's own
// `iptables -A OUTPUT` goes in, Remove takes ours out and leaves theirs; and
// on a namespace of ours alone, Remove leaves it as empty as it was.
func TestNftnlInstallThenBackend(t *testing.T) {
	b := nftnlHost(t)
	rs := rules.NewRuleSet(testpolicy.Policy(t, nftnlConfigs[0]), "0123456789abcdef", rules.AllFeatures)
	for _, others := range []bool{false, true} {
		t.Run(fmt.Sprintf("others=%v", others), func(t *testing.T) {
			ns, tns := testNetns(t)
			before := rulesIn(t, tns)
			installNetlink(t, b, ns, rs)
			// (Before Counters: Remove acts on what Counters read.)
			if others {
				for _, tool := range []string{"iptables", "ip6tables"} {
					tns.Exec(t, b.Dir+"/"+tool, "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
				}
			}
			if ok, err := b.Installed(ns); err != nil || !ok {
				t.Fatalf("installed: %v, %v", ok, err)
			}
			c, err := b.Counters(ns)
			for _, fam := range rules.Families {
				if err != nil || len(c[fam]) != len(rs[fam]) {
					t.Fatalf("counters: %v, %v", c, err)
				}
			}
			if err := b.Remove(ns); err != nil {
				t.Fatal(err)
			}
			after := rulesIn(t, tns)
			if testnet.HasFence(after) {
				t.Errorf("remove left the fence:\n%s", after)
			}
			switch {
			case !others && after != before:
				t.Errorf("remove left the namespace other than it was:\n%s", testnet.Diff(before, after))
			case others && !strings.Contains(after, "tcp dport 9 counter drop"):
				t.Errorf("remove took the user's rules:\n%s", after)
			}
		})
	}
}

// Where the namespace already has a filter table (here a user's rule, or
// our fence), the transaction fails as a whole with EEXIST and the tools
// install, as before; a rule set with a rule this file does not know to be
// identical goes to the tools untried.
func TestNftnlFallsBack(t *testing.T) {
	b := nftnlHost(t)
	rs := rules.NewRuleSet(testpolicy.Policy(t, nftnlConfigs[0]), "0123456789abcdef", rules.AllFeatures)

	ns, tns := testNetns(t)
	tns.Exec(t, b.Dir+"/ip6tables", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
	if done, err := b.installNftnl(ns, rs); done {
		t.Fatalf("with a filter table there: done, %v; want the tools", err)
	}
	execs := b.Execs
	if err := b.Install(ns, rs); err != nil {
		t.Fatal(err)
	}
	if b.Execs-execs != len(rules.Families) {
		t.Errorf("install ran %d tools; want one batch per family", b.Execs-execs)
	}
	if ok, err := b.Installed(ns); err != nil || !ok {
		t.Errorf("installed: %v, %v", ok, err)
	}
	if done, err := b.installNftnl(ns, rs); done {
		t.Errorf("over a fence: done, %v; want the tools", err)
	}
	b.Remove(ns)

	for _, r := range []rules.Rule{
		{Name: "iface and proto", OutIface: "lo", Proto: rules.ProtoTCP, Action: rules.Accept},
		{Name: "unknown proto", Proto: "no-such-protocol", Action: rules.Accept},
		{Name: "icmpv6 in ipv4", Proto: rules.ProtoICMPv6, Action: rules.Accept},
		{Name: "odd prefix", Action: rules.Log, Log: &rules.LogSpec{Target: config.LogKernel, Prefix: "a\\b", RatePer: 1, RateUnit: "second", Burst: 1}},
		{Name: "no action", Proto: rules.ProtoTCP},
	} {
		if _, err := XtExprs(r, rules.IPv4); err == nil {
			t.Errorf("%s: a rule of a shape never checked renders", r.Name)
		}
	}
	odd := rules.RuleSet{rules.IPv4: {{Name: "x", OutIface: "lo", Proto: rules.ProtoTCP, Action: rules.Accept}}}
	fresh, _ := testNetns(t)
	if done, err := b.installNftnl(fresh, odd); done {
		t.Errorf("a rule of a shape never checked: done, %v; want the tools", err)
	}
}

// The legacy tools are never bypassed, nor tools the hook cannot place.
func TestNftVariant(t *testing.T) {
	if b, err := NewIptables(); err == nil {
		t.Logf("host tools in %s: nf_tables %s: %v", b.Dir, nftnlVersion, nftVariant(b.Dir))
	}
	dir := t.TempDir()
	if nftVariant(dir) {
		t.Error("an empty directory is iptables-nft")
	}
	if _, err := testnet.Tool("xtables-legacy-multi"); err == nil {
		if nftVariant(legacyTools(t)) {
			t.Error("the legacy tools are iptables-nft")
		}
	}
}

// The encoders, field by field, against the kernel's structs (uapi
// headers), so that a change shows here before the namespace test.
func TestXtInfos(t *testing.T) {
	le := func(s string) []byte { b, _ := hex.DecodeString(strings.ReplaceAll(s, " ", "")); return b }
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"icmp6 133", icmp6Info(133), le("8500ff00 00000000")},
		{"hl eq 255", hlEqInfo(255), le("00ff0000 00000000")},
		{"owner 1337", ownerUIDInfo(1337), le("39050000 39050000 00000000 00000000 01000000 00000000")},
		{"LOG with uid", mustLog(t, "p: ", true), append(le("0408703a20"), make([]byte, 27)...)},
		{"LOG without uid", mustLog(t, "p: ", false), append(le("0400703a20"), make([]byte, 27)...)},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: %x, want %x", tc.name, tc.got, tc.want)
		}
	}
	for name, n := range map[string]int{"u32": len(u32IPOptionsInfo()), "rt": len(rtAnyInfo()), "conntrack": len(conntrackEstablishedInfo())} {
		want := map[string]int{"u32": 1984, "rt": 280, "conntrack": 168}[name]
		if n != want {
			t.Errorf("%s info is %d bytes, want %d", name, n, want)
		}
	}
	if _, err := logInfo(strings.Repeat("x", 30), true); err == nil {
		t.Error("a LOG prefix of 30 characters renders")
	}
}

func mustLog(t *testing.T, p string, uid bool) []byte {
	b, err := logInfo(p, uid)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The limit as iptables-nft stores it (seen with nft --debug=netlink).
func TestLimitExpr(t *testing.T) {
	for _, tc := range []struct {
		per          int
		unit         string
		rate         uint64
		storedInUnit expr.LimitTime
	}{
		{5, "second", 5, expr.LimitTimeSecond},
		{2, "minute", 2, expr.LimitTimeMinute},
		{24, "day", 1, expr.LimitTimeHour},
		{60, "minute", 1, expr.LimitTimeSecond},
		{3600, "hour", 1, expr.LimitTimeSecond},
		{999999, "day", 694, expr.LimitTimeMinute},
		{120, "minute", 2, expr.LimitTimeSecond},
		{1440, "day", 1, expr.LimitTimeMinute},
		{1, "day", 1, expr.LimitTimeDay},
		{7, "hour", 7, expr.LimitTimeHour},
	} {
		l, err := limitExpr(tc.per, tc.unit, 3)
		if err != nil || l.Rate != tc.rate || l.Unit != tc.storedInUnit || l.Burst != 3 || l.Type != expr.LimitTypePkts || l.Over {
			t.Errorf("%d/%s: %+v, %v; want %d per %d s", tc.per, tc.unit, l, err, tc.rate, tc.storedInUnit)
		}
	}
}

// -d as iptables-nft stores it: whole bytes only, or the whole address
// with a mask; /0 is nothing.
func TestDstExprs(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   string
	}{
		{"0.0.0.0/0", ""},
		{"198.51.100.1/32", "payload 16+4 cmp c6336401"},
		{"198.51.0.0/16", "payload 16+2 cmp c633"},
		{"198.51.96.0/20", "payload 16+4 mask fffff000 cmp c6336000"},
		{"128.0.0.0/1", "payload 16+4 mask 80000000 cmp 80000000"},
		{"2001:db8::/33", "payload 24+16 mask ffffffff800000000000000000000000 cmp 20010db8000000000000000000000000"},
		{"2001:db8:9::/48", "payload 24+6 cmp 20010db80009"},
		{"::/0", ""},
	} {
		p := netip.MustParsePrefix(tc.prefix)
		var parts []string
		for _, e := range dstExprs(p, rules.FamilyOf(p.Addr())) {
			switch e := e.(type) {
			case *expr.Payload:
				parts = append(parts, fmt.Sprintf("payload %d+%d", e.Offset, e.Len))
			case *expr.Bitwise:
				parts = append(parts, fmt.Sprintf("mask %x", e.Mask))
				if !bytes.Equal(e.Xor, make([]byte, len(e.Mask))) || e.Len != uint32(len(e.Mask)) {
					t.Errorf("%s: bitwise %+v", tc.prefix, e)
				}
			case *expr.Cmp:
				parts = append(parts, fmt.Sprintf("cmp %x", e.Data))
			}
		}
		if got := strings.Join(parts, " "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// Every rule carries its -p as NFTA_RULE_COMPAT, as iptables-nft sends it
// (seen with strace): nft_compat refuses REJECT tcp-reset and icmp6
// otherwise, and a wrong protocol would slip past the dumps.
func TestNftnlCompat(t *testing.T) {
	rs := rules.NewRuleSet(testpolicy.Policy(t, nftnlConfigs[0]), "0123456789abcdef", rules.AllFeatures)
	msgs, err := nftnlBatch(rs)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, m := range msgs {
		if m.typ != unix.NFT_MSG_NEWRULE {
			continue
		}
		as, err := netlink.UnmarshalAttributes(m.attrs)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Type&^unix.NLA_F_NESTED == unix.NFTA_RULE_COMPAT {
				c, _ := netlink.UnmarshalAttributes(a.Data)
				got = append(got, uint32(c[0].Data[3]), uint32(c[1].Data[3]))
			}
		}
	}
	var want []uint32
	for _, fam := range rules.Families {
		for _, r := range append(rs[fam], rules.Rule{}) { // and the jump
			want = append(want, protoNumber(r.Proto), 0)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("compat (proto, flags) of the rules: %v, want %v", got, want)
	}
}

// A match the kernel does not have fails the transaction with ENOENT,
// which installNftnl reports as ErrMissingFeature; nothing is left behind.
func TestNftnlMissingMatch(t *testing.T) {
	nftnlHost(t)
	ns, tns := testNetns(t)
	before := rulesIn(t, tns)
	rs := rules.RuleSet{rules.IPv4: {{Name: "x", Action: rules.Accept}}, rules.IPv6: {{Name: "x", Action: rules.Accept}}}
	msgs, err := nftnlBatch(rs)
	if err != nil {
		t.Fatal(err)
	}
	bogus, err := nftnlRule(Chain, []expr.Any{&expr.Match{Name: "nosuchmatch", Info: info(make([]byte, 8))}, &expr.Verdict{Kind: expr.VerdictReturn}}, 0, rules.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	msgs[len(msgs)-3] = nfMsg{typ: unix.NFT_MSG_NEWRULE, flags: unix.NLM_F_CREATE | unix.NLM_F_APPEND, fam: byte(tableFamily(rules.IPv6)), attrs: bogus, what: "the bogus rule"}
	s, err := openNfSock(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	_, err = s.transact(msgs)
	t.Logf("%v", err)
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "the bogus rule") {
		t.Errorf("got %v; want ENOENT naming the bogus rule", err)
	}
	if after := rulesIn(t, tns); after != before {
		t.Errorf("a failed transaction changed the namespace:\n%s", testnet.Diff(before, after))
	}
}

// The version is looked for as a C string of its own, not as part of a
// longer one.
func TestFileHoldsString(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		data string
		want bool
	}{
		{"\x00\x001.8.9 (nf_tables)\x00x", true},
		{"abc\x001.8.9 (nf_tables)x\x001.8.9 (nf_tables)\x00", true},
		{"1.8.9 (nf_tables)\x00", false},
		{"\x001.8.9 (nf_tables)", false},
		{"\x001.8.9 (nf_tables)-rc1\x00", false},
		{"\x00v1.8.9 (nf_tables)\x00", false},
		{"", false},
	} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(tc.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := fileHoldsString(p, "1.8.9 (nf_tables)"); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.data, got, tc.want)
		}
	}
	if fileHoldsString(filepath.Join(dir, "none"), "x") {
		t.Error("a file that does not exist holds nothing")
	}
}
