package hook

import (
	"github.com/google/nftables"
)

// dropEmptyFilterTable removes what the nf_tables variant of iptables leaves
// behind once our chain is gone: its first rule in a namespace creates the
// table "filter" with empty base chains, which would outlive the fence. The
// table goes only if nothing else is in it: no rules, no chain of anyone
// else, no set, no policy but accept. Legacy iptables has no such table, so
// this does nothing there. It must run inside the namespace (InNetns): each
// request opens its netlink socket on the calling thread.
//
// Between the check and the delete another program could add a rule to the
// table; in a namespace whose container is being created or removed, we
// accept that window.
func dropEmptyFilterTable(fam Family) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	family := nftables.TableFamilyIPv4
	if fam == IPv6 {
		family = nftables.TableFamilyIPv6
	}
	tables, err := conn.ListTablesOfFamily(family)
	if err != nil {
		return err
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == "filter" {
			table = t
		}
	}
	if table == nil {
		return nil
	}
	chains, err := conn.ListChainsOfTableFamily(family)
	if err != nil {
		return err
	}
	for _, c := range chains {
		if c.Table.Name != table.Name {
			continue
		}
		if c.Hooknum == nil || (c.Policy != nil && *c.Policy != nftables.ChainPolicyAccept) {
			return nil
		}
		rules, err := conn.GetRules(table, c)
		if err != nil || len(rules) > 0 {
			return err
		}
	}
	sets, err := conn.GetSets(table)
	if err != nil || len(sets) > 0 {
		return err
	}
	conn.DelTable(table)
	return conn.Flush()
}
