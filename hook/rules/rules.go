// SPDX-License-Identifier: Apache-2.0

// Package rules turns a policy into the fence's rule set, per IP family,
// independent of any backend, and tallies the rules' counters.
package rules

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"
)

// Family is an IP family; each has its own table and chain.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Families lists both, in install order.
var Families = []Family{IPv4, IPv6}

func (f Family) String() string { return "ipv" + strconv.Itoa(int(f)) }

// Proto is the layer-4 protocol a rule matches; ProtoAny matches all.
type Proto string

const (
	ProtoAny    Proto = ""
	ProtoTCP    Proto = "tcp"
	ProtoUDP    Proto = "udp"
	ProtoICMP   Proto = "icmp"
	ProtoICMPv6 Proto = "ipv6-icmp"
)

// Action is what a rule does with a packet it matches.
type Action string

const (
	Accept Action = "accept"
	// Log writes a rate-limited log record (LOG or NFLOG) and lets the packet
	// go on to the next rule.
	Log Action = "log"
	// RejectTCPReset answers with a TCP reset: connect() gets ECONNREFUSED.
	RejectTCPReset Action = "reject-tcp-reset"
	// RejectPortUnreachable answers with ICMP(v6) port unreachable: a
	// connected UDP socket gets ECONNREFUSED on its next call.
	RejectPortUnreachable Action = "reject-port-unreachable"
	// RejectAdminProhibited answers with ICMP(v6) administratively prohibited.
	RejectAdminProhibited Action = "reject-admin-prohibited"
)

// Rule is one rule of the fence, in a form each backend can render.
// The zero value of each match field means "any".
type Rule struct {
	// Name says what the rule is for ("proxy", "refuse-tcp", ...); status
	// and the monitor report counters by it.
	Name string

	// SourceRouted matches packets that could be steered past the
	// destination the other rules see: IPv6 with a routing header of any
	// type, IPv4 with any IP option (the source routes among them; no
	// option has a use for a workload).
	SourceRouted bool
	OutIface     string       // output interface
	Proto        Proto        // layer-4 protocol
	Dst          netip.Prefix // destination; invalid means any
	DPort        uint16       // destination port, with ProtoTCP or ProtoUDP
	ICMPv6Type   *uint8       // with ProtoICMPv6
	HopLimit     uint8        // IPv6 hop limit equal to this; 0 means any
	Established  bool         // conntrack state ESTABLISHED or RELATED
	TCPSyn       bool         // TCP with SYN set and ACK, RST, FIN clear: a new connection
	UID          *uint32      // socket owner uid

	Action Action
	Log    *LogSpec // with Action Log
}

// LogSpec is how a Log rule logs.
type LogSpec struct {
	Target   string // config.LogKernel or config.LogNflog
	Prefix   string // the whole prefix, "<stem>:<12 of the id>: "
	Group    uint16 // NFLOG group
	RatePer  int    // packets per RateUnit
	RateUnit string // second, minute, hour or day
	Burst    int
	LogUID   bool
}

// Features are the optional kernel features the rule set may use. A kernel
// without one still gets the refusals (see the contract).
type Features struct {
	Conntrack bool `json:"conntrack"`
	Log       bool `json:"log"`
}

// AllFeatures is what a normal kernel has.
var AllFeatures = Features{Conntrack: true, Log: true}

// LogPrefix is the LOG/NFLOG prefix for a container: the stem, the first 12
// characters of its id, and ": ".
func LogPrefix(stem, containerID string) string {
	return stem + ":" + ShortID(containerID) + ": "
}

// ShortID is the part of a container id that goes into log prefixes.
func ShortID(containerID string) string {
	if len(containerID) > 12 {
		return containerID[:12]
	}
	return containerID
}

func ptr[T any](v T) *T { return &v }

// Rules builds the fence for one family, in order. It is a pure function of
// the policy, the container (for the log prefix) and the kernel's caps.
func Rules(p config.Policy, containerID string, fam Family, caps Features) []Rule {
	b := &builder{rs: make([]Rule, 0, 24)} // a family has about 20 rules: one allocation
	if caps.Log {
		b.logSpec = newLogSpec(p.Log, containerID)
	}
	b.enforce = p.Mode == config.ModeEnforce

	// Before anything passes: a routing header (an unprivileged socket can
	// set one) sends the packet on from the proxy to anywhere.
	b.refuse("source-route", Rule{SourceRouted: true}, RejectAdminProhibited)

	b.passLink(fam)
	if caps.Conntrack {
		r := Rule{}
		r.Name, r.Established, r.Action = "established", true, Accept
		b.add(r)
	}
	b.passAllowed(p, fam)
	b.refuseRest(p, fam, caps)
	return b.rs
}

// builder collects one family's rules in order.
type builder struct {
	rs      []Rule
	logSpec *LogSpec // nil where the kernel cannot log
	enforce bool
}

func (b *builder) add(r Rule) { b.rs = append(b.rs, r) }

// refuse adds the rules for one kind of packet the fence does not pass: its
// log rule where the kernel can log, then its refusal (enforce) or an accept
// that ends the fence for it (audit).
func (b *builder) refuse(name string, match Rule, reject Action) {
	if b.logSpec != nil {
		l := match
		l.Name, l.Action, l.Log = "log-"+name, Log, b.logSpec
		b.add(l)
	}
	if b.enforce && reject != "" {
		m := match
		m.Name, m.Action = "refuse-"+name, reject
		b.add(m)
	} else if !b.enforce && b.logSpec != nil {
		// Audit mode lets the packet go on after its log rule; this
		// accept ends the fence for it, so log-other (any protocol)
		// does not log it again, and its counter counts every attempt
		// the log rule samples.
		m := match
		m.Name, m.Action = "audit-"+name, Accept
		b.add(m)
	}
}

// passLink accepts loopback and, in IPv6, the ICMPv6 the link itself needs.
func (b *builder) passLink(fam Family) {
	r := Rule{}
	r.Name, r.OutIface, r.Action = "loopback", "lo", Accept
	b.add(r)
	if fam != IPv6 {
		return
	}
	// Neighbour discovery: without it no address on the link is
	// reachable, the proxy's included. RFC 4861 has receivers drop it
	// unless the hop limit is 255, so it never leaves the link.
	for t := 133; t <= 137; t++ {
		r := Rule{}
		r.Name, r.Proto, r.ICMPv6Type, r.HopLimit, r.Action = "neighbour-discovery", ProtoICMPv6, ptr(uint8(t)), 255, Accept
		b.add(r)
	}
	// Multicast listener reports for the solicited-node groups: a
	// switch or bridge that snoops MLD stops forwarding neighbour
	// solicitations to a port whose reports it no longer sees.
	// They go to link-local multicast only (ff02::16, or ff02:: groups).
	for _, t := range []int{131, 132, 143} {
		r := Rule{}
		r.Name, r.Proto, r.ICMPv6Type, r.Dst, r.Action = "multicast-listener", ProtoICMPv6, ptr(uint8(t)), linkLocalMulticast, Accept
		b.add(r)
	}
}

// passAllowed accepts what the policy lets through: the proxies, the allow
// entries, DNS and the allowed uids.
func (b *builder) passAllowed(p config.Policy, fam Family) {
	for _, ap := range p.Proxies {
		if FamilyOf(ap.Addr()) != fam {
			continue
		}
		r := Rule{}
		r.Name, r.Proto, r.Dst, r.DPort, r.Action = "proxy", ProtoTCP, host(ap.Addr()), ap.Port(), Accept
		b.add(r)
	}
	for _, a := range p.Allow {
		if FamilyOf(a.Prefix.Addr()) != fam {
			continue
		}
		for _, proto := range allowProtos(a) {
			ports := a.Ports
			if len(ports) == 0 {
				ports = []uint16{0}
			}
			for _, port := range ports {
				r := Rule{}
				r.Name, r.Proto, r.Dst, r.DPort, r.Action = "allow", proto, a.Prefix, port, Accept
				b.add(r)
			}
		}
	}
	for _, d := range p.DNS {
		if FamilyOf(d) != fam {
			continue
		}
		for _, proto := range []Proto{ProtoUDP, ProtoTCP} {
			r := Rule{}
			r.Name, r.Proto, r.Dst, r.DPort, r.Action = "dns", proto, host(d), 53, Accept
			b.add(r)
		}
	}
	for _, uid := range p.AllowUids {
		r := Rule{}
		r.Name, r.UID, r.Action = "allow-uid", ptr(uid), Accept
		b.add(r)
	}
}

// allowProtos is the protocols an allow entry gets one rule each for.
func allowProtos(a config.AllowRule) []Proto {
	switch {
	case a.Protocol == "tcp":
		return []Proto{ProtoTCP}
	case a.Protocol == "udp":
		return []Proto{ProtoUDP}
	case len(a.Ports) > 0: // a port needs a protocol
		return []Proto{ProtoTCP, ProtoUDP}
	}
	return []Proto{ProtoAny}
}

// refuseRest ends the fence: everything the rules before it did not pass.
func (b *builder) refuseRest(p config.Policy, fam Family, caps Features) {
	tcp := Rule{}
	tcp.Proto = ProtoTCP
	if !caps.Conntrack {
		// Without conntrack an answer cannot be told from a new connection
		// except for TCP: refuse only SYNs, so servers in the container
		// still reply.
		tcp.TCPSyn = true
		b.refuse("tcp", tcp, RejectTCPReset)
		return
	}
	b.refuse("tcp", tcp, RejectTCPReset)
	udp := Rule{}
	udp.Proto = ProtoUDP
	b.refuse("udp", udp, RejectPortUnreachable)
	if p.OtherProtocols == config.OtherAccept {
		// ICMP of the family and nothing else: UDP-Lite, SCTP, DCCP, GRE
		// and raw IP reach any host as well as UDP does.
		r := Rule{}
		r.Name, r.Proto, r.Action = "icmp", ProtoICMP, Accept
		if fam == IPv6 {
			r.Proto = ProtoICMPv6
		}
		b.add(r)
	}
	b.refuse("other", Rule{}, RejectAdminProhibited)
}

func newLogSpec(l config.LogPolicy, containerID string) *LogSpec {
	n, unit, _ := strings.Cut(l.Rate, "/")
	per, _ := strconv.Atoi(n) // validated by config
	return &LogSpec{
		Target:   l.Target,
		Prefix:   LogPrefix(l.Prefix, containerID),
		Group:    l.Group,
		RatePer:  per,
		RateUnit: unit,
		Burst:    l.Burst,
		LogUID:   true,
	}
}

var linkLocalMulticast = netip.MustParsePrefix("ff02::/16")

func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// String renders a rule for humans (status, test failures).
func (r Rule) String() string {
	// Appended, not printed with fmt: status writes one for each rule of
	// each fence.
	b := make([]byte, 0, 96)
	b = append(append(b, r.Name...), ':')
	if r.SourceRouted {
		b = append(b, " source-routed"...)
	}
	if r.OutIface != "" {
		b = append(append(b, " out="...), r.OutIface...)
	}
	if r.Proto != ProtoAny {
		b = append(append(b, " proto="...), r.Proto...)
	}
	if r.Dst.IsValid() {
		b = r.Dst.AppendTo(append(b, " dst="...))
	}
	if r.DPort != 0 {
		b = strconv.AppendUint(append(b, " dport="...), uint64(r.DPort), 10)
	}
	if r.ICMPv6Type != nil {
		b = strconv.AppendUint(append(b, " icmpv6-type="...), uint64(*r.ICMPv6Type), 10)
	}
	if r.HopLimit != 0 {
		b = strconv.AppendUint(append(b, " hop-limit="...), uint64(r.HopLimit), 10)
	}
	if r.Established {
		b = append(b, " ct=established,related"...)
	}
	if r.TCPSyn {
		b = append(b, " syn"...)
	}
	if r.UID != nil {
		b = strconv.AppendUint(append(b, " uid="...), uint64(*r.UID), 10)
	}
	b = append(append(b, " -> "...), r.Action...)
	if r.Log != nil {
		b = append(append(append(b, ' '), r.Log.Target...), " prefix="...)
		b = strconv.AppendQuote(b, r.Log.Prefix)
	}
	return string(b)
}
