// SPDX-License-Identifier: Apache-2.0

package nftables

import (
	"fmt"

	"github.com/bypass-hook/bypass-hook/hook/backend/fence"
	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// Generation is the nf_tables generation of the namespace ns (see
// nfnl.Conn.Generation): while it stays the same, so does every nf_tables
// rule there, the fence's among them. It costs one small request where
// Inspect dumps the chains, the tables and the rules.
func Generation(ns netns.Handle) (uint32, error) {
	c, err := open(ns.Path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	gen, err := c.Generation()
	if err != nil {
		return 0, fmt.Errorf("reading the nf_tables generation in %s: %w", ns.Path, fence.NftErr(err))
	}
	return gen, nil
}
