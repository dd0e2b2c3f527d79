// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// decode calls fn for each attribute of a message's payload (nfgenmsg, then
// attributes).
func decode(payload []byte, what string, fn func(typ uint16, data []byte) error) error {
	if len(payload) < 4 {
		return errors.New("a " + what + " message shorter than its header")
	}
	return attrs(payload[4:], fn)
}

// attrs calls fn for each netlink attribute in b with its type (the
// nested and byte-order flags masked off) and its data, a part of b, not a
// copy: a status over a thousand fences parses some hundred thousand
// attributes, and a copy of each (as mdlayher/netlink's AttributeDecoder
// makes) was most of its garbage. It reads b as that decoder does, which
// FuzzAttrsAsNetlink checks: every header is looked at before fn is
// called; an attribute longer than what is left, or shorter than its
// header (but not 0), ends the walk with an error; fn's error ends it too.
func attrs(b []byte, fn func(typ uint16, data []byte) error) error {
	for i := 0; i < len(b); i += attrStep(b[i:]) {
		if len(b)-i < attrHeader {
			return errBadAttr
		}
	}
	for i := 0; i < len(b); i += attrStep(b[i:]) {
		l := int(binary.NativeEndian.Uint16(b[i:]))
		switch {
		case l > len(b)-i, l != 0 && l < attrHeader:
			return errBadAttr
		}
		data := b[i : i : i+attrHeader] // empty, for an attribute of length 0
		if l != 0 {
			data = b[i+attrHeader : i+l : i+l]
		}
		if err := fn(binary.NativeEndian.Uint16(b[i+2:])&attrTypeMask, data); err != nil {
			return err
		}
	}
	return nil
}

const (
	attrHeader   = 4      // length and type, 16 bits each
	attrTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

var errBadAttr = errors.New("invalid attribute; length too short or too large")

// attrStep is how far the attribute at the start of b reaches, aligned to
// 4 bytes; a header's length at least.
func attrStep(b []byte) int {
	l := max(int(binary.NativeEndian.Uint16(b)), attrHeader)
	return (l + 3) &^ 3
}

// Integers are big-endian, as nf_tables sends them; an attribute of
// another size than the integer is an error, and reads as 0.
func u32(typ uint16, b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("netlink: attribute %d is not a uint32; length: %d", typ, len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

func i32(typ uint16, b []byte) (int32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("netlink: attribute %d is not a int32; length: %d", typ, len(b))
	}
	return int32(binary.BigEndian.Uint32(b)), nil
}

func u64(typ uint16, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("netlink: attribute %d is not a uint64; length: %d", typ, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// str is a string attribute without its trailing NULs.
func str(b []byte) string { return string(bytes.TrimRight(b, "\x00")) }

// exprName is an expression's name; the names the fences use are not
// allocated again for each expression of each rule.
func exprName(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	for _, n := range knownExprs {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

var knownExprs = []string{"counter", "immediate", "meta", "cmp", "payload", "log", "reject", "ct", "bitwise", "limit", "exthdr", "lookup", "match", "target"}

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

// ParseRule reads a NEWRULE message's payload (nfgenmsg, attributes). The
// expressions' data are parts of payload, which the caller leaves as it is.
func ParseRule(payload []byte) (Rule, error) {
	var r Rule
	err := decode(payload, "rule", func(typ uint16, data []byte) (err error) {
		switch typ {
		case unix.NFTA_RULE_TABLE:
			r.Table = str(data)
		case unix.NFTA_RULE_CHAIN:
			r.Chain = str(data)
		case unix.NFTA_RULE_HANDLE:
			r.Handle, err = u64(typ, data)
		case unix.NFTA_RULE_USERDATA:
			r.Comment = comment(data)
		case unix.NFTA_RULE_EXPRESSIONS:
			n := 0
			_ = attrs(data, func(uint16, []byte) error { n++; return nil })
			if n > 0 {
				r.Exprs = make([]Expr, 0, n) // one allocation, not one per doubling
			}
			err = attrs(data, func(_ uint16, elem []byte) error {
				var e Expr
				err := attrs(elem, func(typ uint16, data []byte) error {
					switch typ {
					case unix.NFTA_EXPR_NAME:
						e.Name = exprName(data)
					case unix.NFTA_EXPR_DATA:
						e.Data = data
					}
					return nil
				})
				r.Exprs = append(r.Exprs, e)
				return err
			})
		}
		return err
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
func (r Rule) Line(name string) string { return string(r.AppendLine(nil, name)) }

// AppendLine appends the rule's Line to b.
func (r Rule) AppendLine(b []byte, name string) []byte {
	b = append(b, name...)
	for _, e := range r.Exprs {
		b = append(append(b, ' '), e.Name...)
		if e.Name != "counter" {
			b = hex.AppendEncode(append(b, ':'), e.Data)
		}
	}
	return b
}

// Packets is the packet count of the rule's last counter expression; 0
// when it has none.
func (r Rule) Packets() uint64 {
	var n uint64
	for _, e := range r.Exprs {
		if e.Name != "counter" {
			continue
		}
		_ = attrs(e.Data, func(typ uint16, data []byte) (err error) {
			if typ == unix.NFTA_COUNTER_PACKETS {
				n, err = u64(typ, data)
			}
			return err
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
	err := attrs(e.Data, func(typ uint16, data []byte) error {
		if typ != unix.NFTA_IMMEDIATE_DATA {
			return nil
		}
		return attrs(data, func(typ uint16, data []byte) error {
			if typ != unix.NFTA_DATA_VERDICT {
				return nil
			}
			ok = true
			return attrs(data, func(typ uint16, data []byte) (err error) {
				switch typ {
				case unix.NFTA_VERDICT_CODE:
					var c uint32
					c, err = u32(typ, data)
					code = int32(c)
				case unix.NFTA_VERDICT_CHAIN:
					chain = str(data)
				}
				return err
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
	err := decode(payload, "table", func(typ uint16, data []byte) (err error) {
		switch typ {
		case unix.NFTA_TABLE_NAME:
			t.Name = str(data)
		case unix.NFTA_TABLE_FLAGS:
			t.Flags, err = u32(typ, data)
		}
		return err
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
	err := decode(payload, "chain", func(typ uint16, data []byte) (err error) {
		switch typ {
		case unix.NFTA_CHAIN_TABLE:
			c.Table = str(data)
		case unix.NFTA_CHAIN_NAME:
			c.Name = str(data)
		case unix.NFTA_CHAIN_TYPE:
			c.Type = str(data)
		case unix.NFTA_CHAIN_POLICY:
			var p uint32
			p, err = u32(typ, data)
			c.Policy = &p
		case unix.NFTA_CHAIN_HOOK:
			c.Hooked = true
			err = attrs(data, func(typ uint16, data []byte) (err error) {
				switch typ {
				case unix.NFTA_HOOK_HOOKNUM:
					c.Hooknum, err = u32(typ, data)
				case unix.NFTA_HOOK_PRIORITY:
					c.Priority, err = i32(typ, data)
				}
				return err
			})
		}
		return err
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
	_ = attrs(m.Data[skip:], func(typ uint16, data []byte) error {
		if typ == unix.NLMSGERR_ATTR_MSG {
			msg = " (" + str(data) + ")"
		}
		return nil
	})
	return msg
}
