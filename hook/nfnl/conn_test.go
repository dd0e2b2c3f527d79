// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

func open(t *testing.T) *Conn {
	t.Helper()
	testnet.RequireRoot(t)
	ns := testnet.NewNetns(t)
	c, err := Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// A table "t", a regular chain "c" in it, and n rules in the chain that
// accept, each echoed.
func tableChainRules(t *testing.T, n int, chain string) []Msg {
	msgs := []Msg{
		{Type: unix.NFT_MSG_NEWTABLE, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET,
			Attrs: Attrs(netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: Cstring("t")}), What: "the table"},
		{Type: unix.NFT_MSG_NEWCHAIN, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET,
			Attrs: Attrs(netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: Cstring("t")},
				netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: Cstring("c")}), What: "the chain"},
	}
	accept := marshal(t, &expr.Verdict{Kind: expr.VerdictAccept})
	for range n {
		msgs = append(msgs, Msg{Type: unix.NFT_MSG_NEWRULE, Flags: unix.NLM_F_CREATE | unix.NLM_F_APPEND | unix.NLM_F_ECHO, Family: unix.NFPROTO_INET,
			Attrs: Attrs(
				netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: Cstring("t")},
				netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: Cstring(chain)},
				netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: Attrs(
					netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: accept})},
			), What: "a rule in " + chain})
	}
	return msgs
}

// What Transact relies on, as the package comment says, on the running
// kernel: every answer is queued when sendmsg returns; the echoes come
// first, in the order of the rules (the commit sends them), then the
// acknowledgements, in the order of the messages, the last message's last;
// a dump ends with NLMSG_DONE on the request's number.
func TestReplyOrder(t *testing.T) {
	c := open(t)
	const n = 5
	msgs := tableChainRules(t, n, "c")
	b, first, last := c.batch(msgs, func(int) bool { return true })
	if err := c.send(b); err != nil {
		t.Fatal(err)
	}
	var echoes, acks []uint32
	for {
		replies, err := c.recv(unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			break // everything was queued before sendmsg returned
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range replies {
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if e := Errno(m.Data); e != 0 {
					t.Fatalf("message %d: %v", m.Header.Seq-first, e)
				}
				acks = append(acks, m.Header.Seq-first)
			case Type(unix.NFT_MSG_NEWRULE):
				if len(acks) > 0 {
					t.Errorf("the echo of message %d came after %d acknowledgements", m.Header.Seq-first, len(acks))
				}
				echoes = append(echoes, m.Header.Seq-first)
			default:
				t.Errorf("an answer of type %#x", m.Header.Type)
			}
		}
	}
	t.Logf("echoes of messages %v, then acknowledgements of %v", echoes, acks)
	var wantEchoes, wantAcks []uint32
	for i := range msgs {
		wantAcks = append(wantAcks, uint32(i+1))
		if i >= 2 {
			wantEchoes = append(wantEchoes, uint32(i+1))
		}
	}
	if !slices.Equal(echoes, wantEchoes) || !slices.Equal(acks, wantAcks) {
		t.Errorf("echoes %v and acknowledgements %v queued when sendmsg returned; want %v and %v", echoes, acks, wantEchoes, wantAcks)
	}
	if len(acks) == 0 || acks[len(acks)-1] != last-first {
		t.Errorf("the last answer is not the last message's acknowledgement")
	}

	rs, err := c.ChainRules(unix.NFPROTO_INET, "t", "c")
	if err != nil || len(rs) != n {
		t.Fatalf("dump: %d rules, %v", len(rs), err)
	}
	for _, r := range rs {
		if r.Table != "t" || r.Chain != "c" || r.Handle == 0 {
			t.Errorf("dumped %+v", r)
		}
	}
}

// A batch with a failing message is refused whole, the error names the
// message that failed, and an answer to it still queued is not taken for
// the next batch's.
func TestBatchIsAllOrNothing(t *testing.T) {
	c := open(t)
	msgs := append(tableChainRules(t, 2, "c"), tableChainRules(t, 1, "no-such-chain")[2:]...)
	msgs = append(msgs, tableChainRules(t, 1, "c")[2:]...)
	_, err := c.Transact(msgs)
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "a rule in no-such-chain") {
		t.Fatalf("got %v, want ENOENT naming the rule", err)
	}
	tables, err := c.Dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_UNSPEC, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Errorf("%d tables after a refused batch, want none", len(tables))
	}
	echoes, err := c.Transact(tableChainRules(t, 3, "c"))
	if err != nil {
		t.Fatalf("a good batch after a refused one: %v", err)
	}
	if len(echoes) != 3 {
		t.Errorf("%d echoes, want 3", len(echoes))
	}
}

// A batch whose messages all pass but whose commit fails (an anonymous set
// that no rule binds: nf_tables_commit refuses it) is a refused batch, not
// an error of its first message, and leaves nothing behind.
func TestCommitFailure(t *testing.T) {
	c := open(t)
	set := Attrs(
		netlink.Attribute{Type: unix.NFTA_SET_TABLE, Data: Cstring("t")},
		netlink.Attribute{Type: unix.NFTA_SET_NAME, Data: Cstring("__set%d")},
		netlink.Attribute{Type: unix.NFTA_SET_FLAGS, Data: be32(unix.NFT_SET_ANONYMOUS | unix.NFT_SET_CONSTANT)},
		netlink.Attribute{Type: unix.NFTA_SET_KEY_LEN, Data: be32(4)},
		netlink.Attribute{Type: unix.NFTA_SET_ID, Data: be32(1)},
	)
	_, err := c.Transact([]Msg{
		{Type: unix.NFT_MSG_NEWTABLE, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, Attrs: Attrs(netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: Cstring("t")}), What: "the table"},
		{Type: unix.NFT_MSG_NEWSET, Flags: unix.NLM_F_CREATE, Family: unix.NFPROTO_INET, Attrs: set, What: "the set"},
	})
	if !errors.Is(err, ErrBatchRefused) || strings.Contains(err.Error(), "the table") {
		t.Errorf("got %v; want the batch refused, not the table blamed", err)
	}
	tables, derr := c.Dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_UNSPEC, nil)
	if derr != nil || len(tables) != 0 {
		t.Errorf("%d tables (%v) after a failed commit, want none", len(tables), derr)
	}
}

// DumpEach hands over each message where it was received; a reader that
// stops at the first still leaves the socket ready for the next dump: the
// rest of the answer (here some parts of it, a thousand rules) is read and
// dropped, not left to the next request, which the kernel would refuse
// while the first dump runs (EBUSY) or answer after it.
func TestDumpEachStopsEarly(t *testing.T) {
	c := open(t)
	const n = 1000
	if _, err := c.Transact(tableChainRules(t, n, "c")); err != nil {
		t.Fatal(err)
	}
	attrs := Attrs(netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: Cstring("t")},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: Cstring("c")})
	stop := errors.New("enough")
	seen := 0
	err := c.DumpEach(unix.NFT_MSG_GETRULE, unix.NFPROTO_INET, attrs, func() { seen = 0 }, func(payload []byte) error {
		seen++
		if _, err := ParseRule(payload); err != nil {
			t.Error(err)
		}
		return stop
	})
	if !errors.Is(err, stop) || seen != 1 {
		t.Fatalf("DumpEach: %v after %d messages, want the reader's error after 1", err, seen)
	}
	for range 2 {
		rules, err := c.ChainRules(unix.NFPROTO_INET, "t", "c")
		if err != nil || len(rules) != n {
			t.Fatalf("the next dump on the socket: %d rules, %v; want %d", len(rules), err, n)
		}
	}
}
