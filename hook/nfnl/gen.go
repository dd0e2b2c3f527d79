// SPDX-License-Identifier: Apache-2.0

package nfnl

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Generation asks for the namespace's nf_tables generation: a number the
// kernel moves on at every ruleset change it commits there (any table,
// family or tool that goes through nf_tables, iptables-nft included; not
// legacy iptables, nor packet counters). An unchanged generation means an
// unchanged ruleset.
func (c *Conn) Generation() (uint32, error) {
	b, seq := c.appendMsg(nil, Type(unix.NFT_MSG_GETGEN), unix.NLM_F_REQUEST, unix.AF_UNSPEC, 0, nil)
	if err := c.send(b); err != nil {
		return 0, err
	}
	for {
		replies, err := c.recv(0)
		if err != nil {
			return 0, err
		}
		for _, m := range replies {
			if m.Header.Seq != seq {
				continue
			}
			if m.Header.Type == unix.NLMSG_ERROR {
				if errno := Errno(m.Data); errno != 0 {
					return 0, errno
				}
				continue
			}
			return ParseGeneration(m.Data)
		}
	}
}

// ParseGeneration reads the generation out of a NEWGEN message's payload
// (nfgenmsg, attributes).
func ParseGeneration(payload []byte) (uint32, error) {
	var id uint32
	found := false
	err := decode(payload, "generation", func(typ uint16, data []byte) (err error) {
		if typ == unix.NFTA_GEN_ID {
			id, err = u32(typ, data)
			found = true
		}
		return err
	})
	if err == nil && !found {
		err = errors.New("a generation message without its id")
	}
	return id, err
}
