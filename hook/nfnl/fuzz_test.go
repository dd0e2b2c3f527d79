// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"syscall"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// FuzzParse: whatever bytes a message carries, the parsers return a value
// or an error and never panic (a rule's user data once made it panic: see
// comment); what they read of a rule is stable (a
// second parse of the same bytes gives the same digest line).
func FuzzParse(f *testing.F) {
	f.Add(ruleMsg(marshal(f, &expr.Counter{Packets: 1}), marshal(f, &expr.Verdict{Kind: expr.VerdictJump, Chain: "BYPASS-HOOK"})))
	f.Add(inet(
		netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: Cstring("filter")},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: Attrs(
			netlink.Attribute{Type: unix.NFTA_HOOK_HOOKNUM, Data: []byte{0, 0, 0, 3}},
		)},
	))
	f.Add(inet(netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 1}}))
	f.Add([]byte{1, 0, 0, 0, 8, 0})
	f.Add(inet(netlink.Attribute{Type: unix.NFTA_GEN_ID, Data: []byte{0, 0, 0, 9}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseRule(b); err == nil {
			line := r.Line("x")
			_ = r.Packets()
			for _, e := range r.Exprs {
				e.Verdict()
			}
			again, _ := ParseRule(b)
			if again.Line("x") != line {
				t.Fatalf("two parses of the same rule differ")
			}
		}
		ParseChain(b)
		ParseTable(b)
		ParseGeneration(b)
		Errno(b)
		ExtAckMsg(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Flags: unix.NLM_F_ACK_TLVS}, Data: b})
	})
}
