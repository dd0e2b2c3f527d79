// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/iptables"
	"github.com/bypass-hook/bypass-hook/hook/backend/nftables"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/nfnl"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testpolicy"
)

// Tamperings the kernel accepts that open the fence while leaving every
// rule's match and action in place as far as a reader that skips what it
// does not know can tell. Each must leave Inspect saying the fence is not
// whole. Each case first shows that the tampering is real: a direct TCP
// connection that the fence refused before gets out after it.

// wireOut gives the namespace a veth towards a neighbour that never
// answers: a SYN the fence lets through times out, one it refuses is
// reset at once.
func wireOut(t *testing.T, tns *testnet.Netns) {
	t.Helper()
	tns.Exec(t, "ip", "link", "set", "lo", "up")
	tns.Exec(t, "ip", "link", "add", "t0", "type", "veth", "peer", "name", "t1")
	tns.Exec(t, "ip", "addr", "add", "198.51.100.200/24", "dev", "t0")
	tns.Exec(t, "ip", "link", "set", "t0", "up")
	tns.Exec(t, "ip", "link", "set", "t1", "up")
	tns.Exec(t, "ip", "neigh", "add", "198.51.100.2", "lladdr", "02:00:00:00:00:02", "dev", "t0")
}

// refused tells whether a direct connection from the namespace is refused
// (the fence's reset) rather than let out.
func refused(t *testing.T, tns *testnet.Netns) bool {
	t.Helper()
	var got bool
	err := tns.Do(func() error {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(context.Background(), "tcp", "198.51.100.2:80")
		if err == nil {
			c.Close()
		}
		got = errors.Is(err, syscall.ECONNREFUSED)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// prependExpr replaces a rule (as a dump gave it) by itself with one more
// expression in front: xfrm, which never matches a packet without IPsec
// and which google/nftables does not know. The rule keeps its comment.
func prependExpr(t *testing.T, c *nfnl.Conn, pf byte, r nfnl.Rule, proto uint32) {
	t.Helper()
	xfrm := nfnl.Attrs(
		netlink.Attribute{Type: unix.NFTA_EXPR_NAME, Data: nfnl.Cstring("xfrm")},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: nfnl.Attrs(
			netlink.Attribute{Type: 1, Data: be32(1)},   // NFTA_XFRM_DREG
			netlink.Attribute{Type: 2, Data: be32(5)},   // NFTA_XFRM_KEY: reqid
			netlink.Attribute{Type: 3, Data: []byte{1}}, // NFTA_XFRM_DIR: out
		)},
	)
	list := []netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: xfrm}}
	for _, e := range r.Exprs {
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: nfnl.Attrs(
			netlink.Attribute{Type: unix.NFTA_EXPR_NAME, Data: nfnl.Cstring(e.Name)},
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: e.Data},
		)})
	}
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: nfnl.Cstring(r.Table)},
		{Type: unix.NFTA_RULE_CHAIN, Data: nfnl.Cstring(r.Chain)},
		{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, r.Handle)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nfnl.Attrs(list...)},
	}
	if r.Comment != "" {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: userdata.AppendString(nil, userdata.TypeComment, r.Comment)})
	}
	if pf != unix.NFPROTO_INET {
		attrs = append(attrs, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_COMPAT, Data: nfnl.Attrs(
			netlink.Attribute{Type: unix.NFTA_RULE_COMPAT_PROTO, Data: be32(proto)},
			netlink.Attribute{Type: unix.NFTA_RULE_COMPAT_FLAGS, Data: be32(0)},
		)})
	}
	if _, err := c.Transact([]nfnl.Msg{{Type: unix.NFT_MSG_NEWRULE, Flags: unix.NLM_F_REPLACE, Family: pf, Attrs: nfnl.Attrs(attrs...), What: "the tampered rule"}}); err != nil {
		t.Fatal(err)
	}
}

// hostIptables returns the host's iptables tools, or skips.
func hostIptables(t *testing.T) Backend {
	t.Helper()
	testnet.RequireRoot(t)
	b, err := New(config.BackendIptables)
	if err != nil {
		testnet.SkipOrFail(t, "%v", err)
	}
	return b
}

// protoNumber is the IP protocol of -p, as iptables-nft stores it in a
// rule's NFTA_RULE_COMPAT.
func protoNumber(p rules.Proto) uint32 {
	return map[rules.Proto]uint32{rules.ProtoTCP: unix.IPPROTO_TCP, rules.ProtoUDP: unix.IPPROTO_UDP,
		rules.ProtoICMP: unix.IPPROTO_ICMP, rules.ProtoICMPv6: unix.IPPROTO_ICMPV6}[p]
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func testNetns(t *testing.T) (netns.Handle, *testnet.Netns) {
	t.Helper()
	testnet.RequireRoot(t)
	ns := testnet.NewNetns(t)
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	return netns.Handle{ID: id, Path: ns.Path}, ns
}

type tampering struct {
	name string
	do   func(t *testing.T, tns *testnet.Netns, h netns.Handle, rs rules.RuleSet)
}

func dumpRules(t *testing.T, c *nfnl.Conn, pf byte, table, chain string) []nfnl.Rule {
	t.Helper()
	rs, err := c.ChainRules(pf, table, chain)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func withConn(t *testing.T, h netns.Handle, fn func(c *nfnl.Conn)) {
	t.Helper()
	c, err := nfnl.Open(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fn(c)
}

func nftScript(t *testing.T, tns *testnet.Netns, script string) {
	t.Helper()
	cmd := tns.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

var tamperings = map[string][]tampering{
	"iptables": {
		{"an expression that never matches, in front of each refusing rule", func(t *testing.T, tns *testnet.Netns, h netns.Handle, rs rules.RuleSet) {
			withConn(t, h, func(c *nfnl.Conn) {
				for i, rule := range dumpRules(t, c, unix.NFPROTO_IPV4, "filter", iptables.Chain) {
					if r := rs[rules.IPv4][i]; r.Action != rules.Accept && r.Action != rules.Log {
						prependExpr(t, c, unix.NFPROTO_IPV4, rule, protoNumber(r.Proto))
					}
				}
			})
		}},
		{"an expression that never matches, in OUTPUT's jump", func(t *testing.T, tns *testnet.Netns, h netns.Handle, _ rules.RuleSet) {
			withConn(t, h, func(c *nfnl.Conn) {
				prependExpr(t, c, unix.NFPROTO_IPV4, dumpRules(t, c, unix.NFPROTO_IPV4, "filter", "OUTPUT")[0], 0)
			})
		}},
		{"OUTPUT on the input hook", func(t *testing.T, tns *testnet.Netns, _ netns.Handle, _ rules.RuleSet) {
			nftScript(t, tns, "flush chain ip filter OUTPUT\ndelete chain ip filter OUTPUT\nadd chain ip filter OUTPUT { type filter hook input priority 0; policy accept; }\nadd rule ip filter OUTPUT counter jump "+iptables.Chain+"\n")
		}},
		{"OUTPUT an unhooked chain", func(t *testing.T, tns *testnet.Netns, _ netns.Handle, _ rules.RuleSet) {
			nftScript(t, tns, "flush chain ip filter OUTPUT\ndelete chain ip filter OUTPUT\nadd chain ip filter OUTPUT\nadd rule ip filter OUTPUT counter jump "+iptables.Chain+"\n")
		}},
		{"the table dormant", func(t *testing.T, tns *testnet.Netns, _ netns.Handle, _ rules.RuleSet) {
			nftScript(t, tns, "add table ip filter { flags dormant; }\n")
		}},
	},
	"nftables": {
		{"an expression that never matches, in front of each refusing rule", func(t *testing.T, tns *testnet.Netns, h netns.Handle, _ rules.RuleSet) {
			withConn(t, h, func(c *nfnl.Conn) {
				for _, rule := range dumpRules(t, c, unix.NFPROTO_INET, nftables.Table, nftables.Chain) {
					if strings.HasPrefix(rule.Comment, "ipv4 refuse") {
						prependExpr(t, c, unix.NFPROTO_INET, rule, 0)
					}
				}
			})
		}},
		{"the table dormant", func(t *testing.T, tns *testnet.Netns, _ netns.Handle, _ rules.RuleSet) {
			nftScript(t, tns, "add table inet "+nftables.Table+" { flags dormant; }\n")
		}},
	},
}

func TestTamperingIsSeen(t *testing.T) {
	testnet.RequireTools(t, "nft")
	rs := rules.NewRuleSet(testpolicy.Policy(t, "proxies: ['198.51.100.1:3128']\n"), "0123456789abcdef", rules.AllFeatures)
	for _, name := range []string{"iptables", "nftables"} {
		for _, tm := range tamperings[name] {
			t.Run(name+"/"+tm.name, func(t *testing.T) {
				var b Backend = &nftables.Nftables{}
				if name == "iptables" {
					b = hostIptables(t)
				}
				h, tns := testNetns(t)
				wireOut(t, tns)
				if err := b.Install(h, rs); err != nil {
					t.Fatal(err)
				}
				want, err := ReadBack(b, h)
				if err != nil {
					t.Fatal(err)
				}
				if !refused(t, tns) {
					t.Fatal("a direct connection is not refused by the fence just installed")
				}
				tm.do(t, tns, h, rs)
				if refused(t, tns) {
					t.Fatal("the tampering did not open the fence; the case tests nothing")
				}
				seen, err := b.Inspect(h)
				if err != nil {
					t.Fatal(err)
				}
				if whole, why := seen.Whole(want); whole {
					t.Errorf("the fence lets connections out and Inspect says it is whole (%+v)", seen)
				} else {
					t.Logf("not whole: %s", why)
				}
			})
		}
	}
}

// OUTPUT moved in front of nat (priority -150), then a DNAT of the proxy's
// address to another: the fence lets the proxy through and the DNAT sends
// it elsewhere. Shown with a server that answers through the fence, then
// seen by Inspect.
func TestOutputBeforeNatIsSeen(t *testing.T) {
	testnet.RequireTools(t, "nft")
	b := hostIptables(t)
	rs := rules.NewRuleSet(testpolicy.Policy(t, "proxies: ['198.51.100.1:3128']\n"), "0123456789abcdef", rules.AllFeatures)
	h, tns := testNetns(t)
	srv := testnet.NewNetns(t)
	tns.Exec(t, "ip", "link", "set", "lo", "up")
	tns.Exec(t, "ip", "link", "add", "t0", "type", "veth", "peer", "name", "t1", "netns", srv.Name)
	tns.Exec(t, "ip", "addr", "add", "198.51.100.200/24", "dev", "t0")
	tns.Exec(t, "ip", "link", "set", "t0", "up")
	srv.Exec(t, "ip", "addr", "add", "198.51.100.2/24", "dev", "t1")
	srv.Exec(t, "ip", "link", "set", "t1", "up")
	srv.Answer(t, "198.51.100.2:80", "server\n")
	answer := func(addr string) string {
		var got string
		tns.Do(func() error {
			c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", addr)
			if err != nil {
				return nil
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			got = string(buf[:n])
			return nil
		})
		return got
	}
	if err := b.Install(h, rs); err != nil {
		t.Fatal(err)
	}
	want, err := ReadBack(b, h)
	if err != nil {
		t.Fatal(err)
	}
	if got := answer("198.51.100.2:80"); got != "" {
		t.Fatalf("the server answered a direct connection through the fence: %q", got)
	}
	nftScript(t, tns, `flush chain ip filter OUTPUT
delete chain ip filter OUTPUT
add chain ip filter OUTPUT { type filter hook output priority -150; policy accept; }
add rule ip filter OUTPUT counter jump `+iptables.Chain+`
add table ip nat
add chain ip nat OUTPUT { type nat hook output priority -100; policy accept; }
add rule ip nat OUTPUT ip daddr 198.51.100.1 tcp dport 3128 counter dnat to 198.51.100.2:80
`)
	if got := answer("198.51.100.1:3128"); got != "server\n" {
		t.Fatalf("after the tampering the proxy's address gave %q, not the server's answer; the case tests nothing", got)
	}
	seen, err := b.Inspect(h)
	if err != nil {
		t.Fatal(err)
	}
	if whole, _ := seen.Whole(want); whole {
		t.Errorf("the server answers through the fence and Inspect says it is whole (%+v)", seen)
	}
}

// A rule whose user data claims more bytes than it has, which anyone with
// CAP_NET_ADMIN in the namespace can add to our table: reading the fence
// says there is a rule not of ours, and does not panic (the library's
// reader of user data sliced past the end).
func TestMalformedUserDataIsSeen(t *testing.T) {
	testnet.RequireRoot(t)
	h, _ := testNetns(t)
	b := &nftables.Nftables{}
	rs := rules.NewRuleSet(testpolicy.Policy(t, "proxies: ['198.51.100.1:3128']\n"), "0123456789abcdef", rules.AllFeatures)
	if err := b.Install(h, rs); err != nil {
		t.Fatal(err)
	}
	want, err := ReadBack(b, h)
	if err != nil {
		t.Fatal(err)
	}
	withConn(t, h, func(c *nfnl.Conn) {
		accept, err := expr.Marshal(unix.NFPROTO_INET, &expr.Verdict{Kind: expr.VerdictAccept})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Transact([]nfnl.Msg{{Type: unix.NFT_MSG_NEWRULE, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, What: "the rule",
			Attrs: nfnl.Attrs(
				netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: nfnl.Cstring(nftables.Table)},
				netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: nfnl.Cstring(nftables.Chain)},
				netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nfnl.Attrs(
					netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: accept})},
				netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: []byte{0, 50, 'x'}},
			)}})
		if err != nil {
			t.Fatal(err)
		}
	})
	seen, err := b.Inspect(h)
	if err != nil {
		t.Fatal(err)
	}
	if whole, why := seen.Whole(want); whole || !strings.Contains(why, "did not make") {
		t.Errorf("Whole = %v, %q; want a rule not of ours", whole, why)
	}
	if _, err := b.Counters(h); err == nil {
		t.Error("Counters read a fence with a rule not of ours")
	}
}
