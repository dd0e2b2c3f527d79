// SPDX-License-Identifier: Apache-2.0

//go:build perrule

package iptables

import (
	goipt "github.com/coreos/go-iptables/iptables"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// This file is built only with -tags perrule, for `make bench`: PerRule is
// the iptables backend with the per-rule Install the batch replaces, one
// go-iptables AppendUnique (a check, then an append: two execs) per rule.
// The production binary does not carry it.

// PerRule is the iptables backend installing rule by rule.
type PerRule struct{ *Iptables }

// NewPerRule finds the host's iptables tools.
func NewPerRule() (*PerRule, error) {
	b, err := New()
	if err != nil {
		return nil, err
	}
	return &PerRule{b}, nil
}

// Install is not atomic: a failure part way leaves the rules made so far.
func (b *PerRule) Install(ns netns.Handle, rs rules.RuleSet) error {
	return netns.In(ns.Path, func() error {
		for _, fam := range rules.Families {
			proto := goipt.ProtocolIPv4
			if fam == rules.IPv6 {
				proto = goipt.ProtocolIPv6
			}
			ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(b.tool(fam, "")), goipt.Timeout(b.wait()))
			if err != nil {
				return err
			}
			if err := ipt.ClearChain("filter", Chain); err != nil {
				return err
			}
			for _, r := range rs[fam] {
				if err := ipt.AppendUnique("filter", Chain, Args(r, fam)...); err != nil {
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
