// SPDX-License-Identifier: Apache-2.0

package iptables

import (
	"fmt"
	"strconv"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Args renders one rule as iptables arguments (after "-A CHAIN").
// Accepting rules RETURN rather than ACCEPT: a packet the fence lets pass
// still meets whatever else the namespace's OUTPUT holds.
func Args(r rules.Rule, fam rules.Family) []string {
	var a []string
	if r.SourceRouted {
		if fam == rules.IPv6 {
			// rt matches a routing header of any type anywhere in the
			// chain of extension headers.
			a = append(a, "-m", "rt")
		} else {
			// IHL above 5: the header carries options. Mainline has no
			// match that finds LSRR or SSRR among other options; u32 reads
			// the header length.
			a = append(a, "-m", "u32", "--u32", "0>>24&0xF=6:15")
		}
	}
	if r.OutIface != "" {
		a = append(a, "-o", r.OutIface)
	}
	if r.Dst.IsValid() {
		a = append(a, "-d", r.Dst.String())
	}
	if r.Proto != rules.ProtoAny {
		a = append(a, "-p", string(r.Proto))
	}
	if r.ICMPv6Type != nil {
		a = append(a, "-m", "icmp6", "--icmpv6-type", strconv.Itoa(int(*r.ICMPv6Type)))
	}
	if r.HopLimit != 0 {
		a = append(a, "-m", "hl", "--hl-eq", strconv.Itoa(int(r.HopLimit)))
	}
	if r.DPort != 0 {
		a = append(a, "--dport", strconv.Itoa(int(r.DPort)))
	}
	if r.TCPSyn {
		a = append(a, "--syn")
	}
	if r.Established {
		a = append(a, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
	}
	if r.UID != nil {
		a = append(a, "-m", "owner", "--uid-owner", strconv.FormatUint(uint64(*r.UID), 10))
	}
	return append(a, target(r, fam)...)
}

// target renders what a rule does with the packets it matches: its
// target, and the limit match a log rule has before it.
func target(r rules.Rule, fam rules.Family) []string {
	switch r.Action {
	case rules.Accept:
		return []string{"-j", "RETURN"}
	case rules.Log:
		l := r.Log
		a := []string{"-m", "limit", "--limit", fmt.Sprintf("%d/%s", l.RatePer, l.RateUnit), "--limit-burst", strconv.Itoa(l.Burst)}
		if l.Target == config.LogNflog {
			return append(a, "-j", "NFLOG", "--nflog-group", strconv.Itoa(int(l.Group)), "--nflog-prefix", l.Prefix)
		}
		a = append(a, "-j", "LOG", "--log-prefix", l.Prefix)
		if l.LogUID {
			a = append(a, "--log-uid")
		}
		return a
	case rules.RejectTCPReset:
		return []string{"-j", "REJECT", "--reject-with", "tcp-reset"}
	case rules.RejectPortUnreachable:
		return []string{"-j", "REJECT", "--reject-with", map[rules.Family]string{rules.IPv4: "icmp-port-unreachable", rules.IPv6: "icmp6-port-unreachable"}[fam]}
	case rules.RejectAdminProhibited:
		return []string{"-j", "REJECT", "--reject-with", map[rules.Family]string{rules.IPv4: "icmp-admin-prohibited", rules.IPv6: "icmp6-adm-prohibited"}[fam]}
	}
	return nil
}
