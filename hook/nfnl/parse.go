// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"syscall"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// decode calls fn for each attribute of a message's payload (nfgenmsg, then
// attributes), with integers read big-endian, as nf_tables sends them.
func decode(payload []byte, what string, fn func(ad *netlink.AttributeDecoder)) error {
	if len(payload) < 4 {
		return errors.New("a " + what + " message shorter than its header")
	}
	return attrs(payload[4:], fn)
}

// attrs calls fn for each attribute in b; fn reads the current one.
func attrs(b []byte, fn func(ad *netlink.AttributeDecoder)) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		fn(ad)
	}
	return ad.Err()
}

// nested reads the current attribute of ad as nested attributes, each
// passed to fn; an error stops ad.
func nested(ad *netlink.AttributeDecoder, fn func(nad *netlink.AttributeDecoder)) {
	ad.Nested(func(nad *netlink.AttributeDecoder) error {
		for nad.Next() {
			fn(nad)
		}
		return nad.Err()
	})
}

// Rule is a rule as the kernel sends it (a dump or an echo): where it is,
// its comment, and its expressions, each a name and its attributes.
type Rule struct {
	Table, Chain string
	Handle       uint64
	Comment      string
	Exprs        []Expr
}

// Expr is one expression of a rule: its name ("counter", "immediate", ...)
// and its attributes, undecoded.
type Expr struct {
	Name string
	Data []byte
}

// ParseRule reads a NEWRULE message's payload (nfgenmsg, attributes).
func ParseRule(payload []byte) (Rule, error) {
	var r Rule
	err := decode(payload, "rule", func(ad *netlink.AttributeDecoder) {
		switch ad.Type() {
		case unix.NFTA_RULE_TABLE:
			r.Table = ad.String()
		case unix.NFTA_RULE_CHAIN:
			r.Chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.Handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.Comment = comment(ad.Bytes())
		case unix.NFTA_RULE_EXPRESSIONS:
			nested(ad, func(elem *netlink.AttributeDecoder) {
				var e Expr
				nested(elem, func(nad *netlink.AttributeDecoder) {
					switch nad.Type() {
					case unix.NFTA_EXPR_NAME:
						e.Name = nad.String()
					case unix.NFTA_EXPR_DATA:
						e.Data = nad.Bytes()
					}
				})
				r.Exprs = append(r.Exprs, e)
			})
		}
	})
	return r, err
}

// comment reads the comment out of a rule's user data: entries of a type
// byte, a length byte and the value, the comment's value NUL-terminated.
// It is not userdata.GetString, which slices past the end of an entry that
// claims more bytes than there are: user data is whatever the rule's
// writer put there, and anyone with CAP_NET_ADMIN in the namespace can
// write a rule.
func comment(b []byte) string {
	for len(b) >= 2 {
		typ, n := userdata.Type(b[0]), int(b[1])
		if len(b) < 2+n {
			return ""
		}
		if typ == userdata.TypeComment {
			v, _ := bytes.CutSuffix(b[2:2+n], []byte{0})
			return string(v)
		}
		b = b[2+n:]
	}
	return ""
}

// Line renders the rule for a digest: name and each expression as the
// kernel holds it, counters left out (they change as packets pass).
func (r Rule) Line(name string) string {
	b := []byte(name)
	for _, e := range r.Exprs {
		b = append(append(b, ' '), e.Name...)
		if e.Name != "counter" {
			b = hex.AppendEncode(append(b, ':'), e.Data)
		}
	}
	return string(b)
}

// Packets is the packet count of the rule's last counter expression; 0
// when it has none.
func (r Rule) Packets() uint64 {
	var n uint64
	for _, e := range r.Exprs {
		if e.Name != "counter" {
			continue
		}
		_ = attrs(e.Data, func(ad *netlink.AttributeDecoder) {
			if ad.Type() == unix.NFTA_COUNTER_PACKETS {
				n = ad.Uint64()
			}
		})
	}
	return n
}

// Verdict reads an "immediate" expression that sets a verdict: its code
// (NF_ACCEPT, NFT_JUMP, NFT_GOTO, ...) and, for a jump or goto, the chain.
// ok is false for any other expression.
func (e Expr) Verdict() (code int32, chain string, ok bool) {
	if e.Name != "immediate" {
		return 0, "", false
	}
	err := attrs(e.Data, func(ad *netlink.AttributeDecoder) {
		if ad.Type() != unix.NFTA_IMMEDIATE_DATA {
			return
		}
		nested(ad, func(data *netlink.AttributeDecoder) {
			if data.Type() != unix.NFTA_DATA_VERDICT {
				return
			}
			ok = true
			nested(data, func(v *netlink.AttributeDecoder) {
				switch v.Type() {
				case unix.NFTA_VERDICT_CODE:
					code = int32(v.Uint32())
				case unix.NFTA_VERDICT_CHAIN:
					chain = v.String()
				}
			})
		})
	})
	return code, chain, ok && err == nil
}

// Table is what a table dump says of a table.
type Table struct {
	Name  string
	Flags uint32
}

// ParseTable reads a NEWTABLE message's payload.
func ParseTable(payload []byte) (Table, error) {
	var t Table
	err := decode(payload, "table", func(ad *netlink.AttributeDecoder) {
		switch ad.Type() {
		case unix.NFTA_TABLE_NAME:
			t.Name = ad.String()
		case unix.NFTA_TABLE_FLAGS:
			t.Flags = ad.Uint32()
		}
	})
	return t, err
}

// Chain is what a chain dump says of a chain.
type Chain struct {
	Table, Name, Type string
	Hooked            bool // a base chain, on a hook
	Hooknum           uint32
	Priority          int32
	Policy            *uint32
}

// ParseChain reads a NEWCHAIN message's payload.
func ParseChain(payload []byte) (Chain, error) {
	var c Chain
	err := decode(payload, "chain", func(ad *netlink.AttributeDecoder) {
		switch ad.Type() {
		case unix.NFTA_CHAIN_TABLE:
			c.Table = ad.String()
		case unix.NFTA_CHAIN_NAME:
			c.Name = ad.String()
		case unix.NFTA_CHAIN_TYPE:
			c.Type = ad.String()
		case unix.NFTA_CHAIN_POLICY:
			p := ad.Uint32()
			c.Policy = &p
		case unix.NFTA_CHAIN_HOOK:
			c.Hooked = true
			nested(ad, func(nad *netlink.AttributeDecoder) {
				switch nad.Type() {
				case unix.NFTA_HOOK_HOOKNUM:
					c.Hooknum = nad.Uint32()
				case unix.NFTA_HOOK_PRIORITY:
					c.Priority = nad.Int32()
				}
			})
		}
	})
	return c, err
}

// Errno reads the error code of an NLMSG_ERROR message: 0 is an
// acknowledgement.
func Errno(data []byte) syscall.Errno {
	if len(data) < 4 {
		return unix.EBADMSG
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(data)))
}

// ExtAckMsg is the kernel's reason in an error answer, when it gave one,
// as " (reason)".
func ExtAckMsg(m syscall.NetlinkMessage) string {
	// The error code, then the header of the message it answers (its
	// payload left out: NETLINK_CAP_ACK), then the reason's attributes.
	const skip = 4 + unix.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(m.Data) < skip {
		return ""
	}
	var msg string
	_ = attrs(m.Data[skip:], func(ad *netlink.AttributeDecoder) {
		if ad.Type() == unix.NLMSGERR_ATTR_MSG {
			msg = " (" + ad.String() + ")"
		}
	})
	return msg
}
