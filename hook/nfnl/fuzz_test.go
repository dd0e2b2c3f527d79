// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"slices"
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

// FuzzAttrsAsNetlink: attrs, which reads attributes in place, reads any
// bytes as mdlayher/netlink's AttributeDecoder does (the parsers used it
// until status over a thousand fences spent most of its garbage in its
// copies): the same attributes, types and data, up to the same point, and
// an error where it gives one.
func FuzzAttrsAsNetlink(f *testing.F) {
	for _, b := range [][]byte{
		nil,
		{0, 0, 1, 0},                        // length 0: a zero-length attribute
		{2, 0, 1, 0},                        // shorter than its header
		{5, 0, 1, 0, 'x'},                   // data not padded at the end
		{5, 0, 1, 0, 'x', 0, 0, 0, 4, 0, 2}, // a header cut short after one
		{8, 0, 3, 0x80, 1, 2, 3, 4, 200, 0, 1, 0},
		ruleMsg(marshal(f, &expr.Counter{Packets: 1}))[4:],
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		type attr struct {
			typ  uint16
			data string
		}
		var got, want []attr
		err := attrs(b, func(typ uint16, data []byte) error {
			got = append(got, attr{typ, string(data)})
			return nil
		})
		ad, werr := netlink.NewAttributeDecoder(b)
		if werr == nil {
			for ad.Next() {
				want = append(want, attr{ad.Type(), string(ad.Bytes())})
			}
			werr = ad.Err()
		}
		if (err == nil) != (werr == nil) || !slices.Equal(got, want) {
			t.Fatalf("attrs read %v (error %v), the netlink decoder %v (error %v)", got, err, want, werr)
		}
	})
}
