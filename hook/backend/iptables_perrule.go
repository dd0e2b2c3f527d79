// SPDX-License-Identifier: Apache-2.0

//go:build perrule

package backend

import (
	"github.com/coreos/go-iptables/iptables"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// This file is built only with -tags perrule, for `make bench`: it swaps the
// iptables backend's Install for the per-rule way the batch replaces, one
// go-iptables AppendUnique (a check, then an append: two execs) per rule.
// The production binary does not carry it.

func init() {
	backends[config.BackendIptables] = func() (Backend, error) {
		b, err := NewIptables()
		if err != nil {
			return nil, err
		}
		return &perRule{b}, nil
	}
}

type perRule struct{ *Iptables }

// Install is not atomic: a failure part way leaves the rules made so far.
func (b *perRule) Install(ns netns.Handle, rs rules.RuleSet) error {
	return netns.In(ns.Path, func() error {
		for _, fam := range rules.Families {
			proto := iptables.ProtocolIPv4
			if fam == rules.IPv6 {
				proto = iptables.ProtocolIPv6
			}
			ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(b.tool(fam, "")), iptables.Timeout(b.wait()))
			if err != nil {
				return err
			}
			if err := ipt.ClearChain("filter", Chain); err != nil {
				return err
			}
			for _, r := range rs[fam] {
				if err := ipt.AppendUnique("filter", Chain, IptablesArgs(r, fam)...); err != nil {
					return err
				}
			}
			if err := ipt.InsertUnique("filter", "OUTPUT", 1, "-j", Chain); err != nil {
				return err
			}
		}
		return nil
	})
}
