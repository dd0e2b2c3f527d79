// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"errors"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// dropEmptyFilterTables removes what the nf_tables variant of iptables
// leaves behind once our chain is gone: its first rule in a namespace creates
// the table "filter" with empty base chains, which would outlive the fence.
// A table goes only if nothing else is in it: no rules, no chain of anyone
// else, no set, no policy but accept. Legacy iptables has no such table, so
// this does nothing there. It must run inside the namespace (netns.In): each
// request opens its netlink socket on the calling thread. Both families go
// in one transaction, since the kernel makes each transaction that deletes a
// table wait for it to be freed.
//
// Between the check and the delete another program could add a rule to the
// table; in a namespace whose container is being created or removed, we
// accept that window.
func dropEmptyFilterTables(fams ...rules.Family) error {
	if len(fams) == 0 {
		return nil
	}
	conn, err := nftables.New()
	if noNftables(err) {
		return nil
	}
	if err != nil {
		return err
	}
	drop := false
	for _, fam := range fams {
		family := nftables.TableFamilyIPv4
		if fam == rules.IPv6 {
			family = nftables.TableFamilyIPv6
		}
		table, err := emptyFilterTable(conn, family)
		if noNftables(err) {
			return nil // legacy iptables on a kernel without nf_tables: no such table
		}
		if err != nil {
			return err
		}
		if table != nil {
			conn.DelTable(table)
			drop = true
		}
	}
	if !drop {
		return nil
	}
	return conn.Flush()
}

// emptyFilterTable returns the family's table "filter" if it holds nothing
// but empty base chains that accept, and nil otherwise.
func emptyFilterTable(conn *nftables.Conn, family nftables.TableFamily) (*nftables.Table, error) {
	tables, err := conn.ListTablesOfFamily(family)
	if err != nil {
		return nil, err
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == "filter" {
			table = t
		}
	}
	if table == nil {
		return nil, nil
	}
	chains, err := conn.ListChainsOfTableFamily(family)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if c.Table.Name != table.Name {
			continue
		}
		if c.Hooknum == nil || (c.Policy != nil && *c.Policy != nftables.ChainPolicyAccept) {
			return nil, nil
		}
		rules, err := conn.GetRules(table, c)
		if err != nil || len(rules) > 0 {
			return nil, err
		}
	}
	sets, err := conn.GetSets(table)
	if err != nil || len(sets) > 0 {
		return nil, err
	}
	return table, nil
}

func noNftables(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) ||
		errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}
