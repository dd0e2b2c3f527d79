// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// Actions of an event.
const (
	ActionRefused = "refused" // enforce mode: the packet was refused
	ActionAudited = "audited" // audit mode: logged and let through
	// ActionUnknown is an attempt whose fence the monitor does not know (any
	// more): its record was gone before the kernel log line was read.
	ActionUnknown = "unknown"
	// ActionBypassed is a send on a socket family that goes past the
	// network namespace and its fence (AF_VSOCK): seen, not refused.
	ActionBypassed = "bypassed"
)

// Event is one attempt to get past a fence: one JSON line on the monitor's
// standard output.
type Event struct {
	Time time.Time `json:"time"`
	// Container is the full id of the container whose id is in the log
	// prefix: the namespace's first owner (in a pod, its first container to
	// start: NRI never hooks the pause container). With log.target kernel,
	// the 12 characters of the prefix alone when the fence is not known or
	// several containers' ids begin with them (then Owners lists them).
	Container string `json:"container"`
	Proto     string `json:"proto"`
	Src       string `json:"src"`
	Sport     uint16 `json:"sport"`
	Dst       string `json:"dst"`
	Dport     uint16 `json:"dport"`
	// UID owns the socket that sent the packet; null when the kernel did not
	// say (a packet of no local socket).
	UID    *uint32 `json:"uid"`
	Action string  `json:"action"`
	Hint   string  `json:"hint"`
	// Netns is the network namespace, as /proc/PID/ns/net names it.
	Netns string `json:"netns,omitempty"`
	// Owners lists the containers sharing the namespace, when there are
	// more than the one in Container; or the containers the event may be
	// of, when Container is 12 characters several ids begin with.
	Owners []string `json:"owners,omitempty"`
	// Source is where the monitor read the attempt: kernel or nflog.
	Source string `json:"source"`
	// The Kubernetes pod namespace, pod and container name of Container,
	// where the runtime gave them.
	PodNamespace  string `json:"podNamespace,omitempty"`
	Pod           string `json:"pod,omitempty"`
	ContainerName string `json:"containerName,omitempty"`
	// The process that sent the packet, as the kernel saw it when it made
	// or used its socket (socket(), connect(), sendto()): right even when
	// it exited at once. Absent where attribution is off (see the
	// monitor's log) or the kernel noted nothing for the packet.
	// Pid is in the host's pid namespace, PidInContainer in the process's
	// own (the container's); Exe is the executable's file name, Comm the
	// thread's name; Ppid and ParentComm are its parent's.
	Pid            *uint32 `json:"pid,omitempty"`
	PidInContainer uint32  `json:"pidInContainer,omitempty"`
	Comm           string  `json:"comm,omitempty"`
	Exe            string  `json:"exe,omitempty"`
	Ppid           uint32  `json:"ppid,omitempty"`
	ParentComm     string  `json:"parentComm,omitempty"`
	// VsockCID and VsockPort are the peer of an AF_VSOCK send (proto
	// vsock): CID 2 is the host.
	VsockCID  *uint32 `json:"vsockCid,omitempty"`
	VsockPort uint32  `json:"vsockPort,omitempty"`
}

// actionFor is an event's action in a fence of policy mode.
func actionFor(mode string) string {
	if mode == config.ModeAudit {
		return ActionAudited
	}
	return ActionRefused
}

// Hint says in one sentence what to do about an attempt: which setting
// routes the program through the proxy, or which config key allows the
// destination. p may be nil when the fence is unknown.
func Hint(f Flow, p *config.Policy) string {
	proxy := "the proxy"
	if p != nil && len(p.Proxies) > 0 {
		proxy = "http://" + proxyFor(f.Dst, p.Proxies).String()
		for _, ap := range p.Proxies {
			if ap.Addr() == f.Dst && f.Proto == "tcp" && ap.Port() != f.Dport {
				return fmt.Sprintf("%s is the proxy's address, but port %d is not the proxy's (%d): check the port in HTTP_PROXY/HTTPS_PROXY, or send this through %s",
					ap.Addr(), f.Dport, ap.Port(), proxy)
			}
		}
	}
	switch {
	case f.Dport == 53 && (f.Proto == "udp" || f.Proto == "tcp"):
		return "DNS to a resolver the fence does not allow: let the proxy resolve names (HTTP_PROXY/HTTPS_PROXY make clients send names, not addresses), or add the resolver to dns: in the config"
	case f.Proto == "udp" && f.Dport == 443:
		return "QUIC (HTTP/3) cannot go through an HTTP proxy: turn HTTP/3 off so the client falls back to TCP through " + proxy
	case f.Proto == "udp" && f.Dport == 123:
		return "NTP: the host keeps the time; containers need no time client"
	case f.Proto == "tcp" && f.Dport == 22:
		return "SSH: tunnel through the proxy (ssh -o ProxyCommand='nc -X connect -x " + strings.TrimPrefix(proxy, "http://") + " %h %p'), or add the destination to allow: in the config"
	case f.Proto == "tcp" && isHTTPPort(f.Dport):
		return "direct HTTP(S): set HTTPS_PROXY and HTTP_PROXY to " + proxy +
			"; Node.js needs NODE_USE_ENV_PROXY=1 as well, Go programs with their own Transport need Proxy: http.ProxyFromEnvironment, Java needs -Dhttps.proxyHost/-Dhttps.proxyPort"
	case f.Proto == "tcp":
		return "direct TCP: send it through " + proxy + " with HTTP CONNECT, or add the destination to allow: in the config"
	case f.Proto == "udp":
		return "UDP cannot go through an HTTP CONNECT proxy: add the destination to allow: in the config if it must be reached"
	case f.Proto == "icmp" || f.Proto == "icmpv6":
		return "ping cannot go through an HTTP proxy: check reachability with an HTTP request through " + proxy
	}
	return "protocol " + f.Proto + " cannot go through an HTTP proxy: add the destination to allow: in the config, or set otherProtocols: accept"
}

// proxyFor is the proxy a program sending to dst should use: one of the
// same family (an IPv6 attempt is told the IPv6 proxy), else the first.
func proxyFor(dst netip.Addr, proxies []netip.AddrPort) netip.AddrPort {
	for _, ap := range proxies {
		if ap.Addr().Is4() == dst.Unmap().Is4() {
			return ap
		}
	}
	return proxies[0]
}

var httpPorts = []uint16{80, 443, 8080, 8443, 3000, 5000, 8000, 8888}

func isHTTPPort(p uint16) bool { return slices.Contains(httpPorts, p) }

// newEvent fills an event from a flow and what is known of the fence.
func newEvent(t time.Time, f Flow, uid uint32, hasUID bool, fe *fence, source string) Event {
	ev := Event{
		Time:   t.UTC(),
		Proto:  f.Proto,
		Src:    addrString(f.Src),
		Sport:  f.Sport,
		Dst:    addrString(f.Dst),
		Dport:  f.Dport,
		Source: source,
	}
	if hasUID {
		ev.UID = &uid
	}
	if fe == nil {
		ev.Action, ev.Hint = ActionUnknown, Hint(f, nil)
		return ev
	}
	ev.Container = fe.rec.LogID
	id := identityOf(fe.rec)
	ev.PodNamespace, ev.Pod, ev.ContainerName = id.Namespace, id.Pod, id.Container
	ev.Action = actionFor(fe.rec.Policy.Mode)
	ev.Hint = Hint(f, &fe.rec.Policy)
	ev.Netns = fe.rec.Netns.String()
	if len(fe.rec.Owners) > 1 || (len(fe.rec.Owners) == 1 && fe.rec.Owners[0].ID != fe.rec.LogID) {
		for _, o := range fe.rec.Owners {
			ev.Owners = append(ev.Owners, o.ID)
		}
	}
	return ev
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

// identityOf is the Kubernetes identity of the container a record's log
// prefix names: its first owner's, or while that one has left, the pod of
// the others (a pod's containers share its namespace).
func identityOf(rec *records.Record) oci.Identity {
	for _, o := range rec.Owners {
		if o.ID == rec.LogID {
			return o.Identity
		}
	}
	for _, o := range rec.Owners {
		if o.Pod != "" {
			return oci.Identity{Namespace: o.Namespace, Pod: o.Pod}
		}
	}
	return oci.Identity{}
}

// seriesLabels are the attempts metric's labels of a fence: the pod's
// namespace and name and the container's name in Kubernetes, the container
// id elsewhere.
type seriesLabels struct{ namespace, pod, container string }

func labelsOf(rec *records.Record) seriesLabels {
	id := identityOf(rec)
	if id.Pod == "" {
		return seriesLabels{container: rec.LogID}
	}
	return seriesLabels{id.Namespace, id.Pod, id.Container}
}
