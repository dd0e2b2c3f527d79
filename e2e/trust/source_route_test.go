// SPDX-License-Identifier: Apache-2.0

package trust

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// observer counts, in the lab server's namespace (the proxy's), the packets
// that arrive with a source route.
type observer struct {
	t  *testing.T
	ns *testnet.Netns
}

const observerTable = "bh_trust_observer"

func observe(t *testing.T, lab *testnet.Lab) *observer {
	t.Helper()
	testnet.RequireTools(t, "nft")
	script := fmt.Sprintf(`table inet %s {
	chain pre {
		type filter hook prerouting priority -500;
		exthdr rt exists counter comment "srh"
		ip option lsrr exists counter comment "lsrr"
		ip option ssrr exists counter comment "ssrr"
		meta l4proto udplite counter comment "udplite"
		icmpv6 type nd-neighbor-solicit ip6 hoplimit != 255 counter comment "nd_hoplimit"
		icmpv6 type echo-request counter comment "echo6"
	}
}
`, observerTable)
	cmd := lab.Server.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("observer in %s: %v: %s", lab.Server.Name, err, out)
	}
	return &observer{t: t, ns: lab.Server}
}

var counterLine = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "(\w+)"`)

// count returns the packets seen per kind (the rules' comments).
func (o *observer) count() map[string]uint64 {
	o.t.Helper()
	out := o.ns.Exec(o.t, "nft", "list", "chain", "inet", observerTable, "pre")
	n := map[string]uint64{}
	for _, m := range counterLine.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		n[m[2]] = v
	}
	if len(n) != 6 {
		o.t.Fatalf("observer: cannot read the counters from:\n%s", out)
	}
	return n
}

// Hole 2: an unprivileged socket sets a source route whose first hop is the
// proxy and whose final destination is elsewhere, on the proxy's port. On
// main the packet matched the proxy rule and left toward the proxy; the
// fence must refuse it before any pass rule, in both backends and families.
func TestSourceRouteRefused(t *testing.T) {
	lab := testnet.NewLab(t)
	obs := observe(t, lab)
	port := strconv.Itoa(testnet.ProxyPort)
	probes := []testnet.Probe{
		// 2001:db8:1::9 and 198.51.100.9 are in the lab's prefixes and no
		// one's: the destinations the route would reach past the proxy.
		{Kind: testnet.ProbeTCP, Route: testnet.RouteSRH, Via: lab.ServerV6.String(), Addr: net.JoinHostPort("2001:db8:1::9", port)},
		{Kind: testnet.ProbeTCP, Route: testnet.RouteLSRR, Via: lab.ServerV4.String(), Addr: net.JoinHostPort("198.51.100.9", port)},
		{Kind: testnet.ProbeTCP, Route: testnet.RouteSSRR, Via: lab.ServerV4.String(), Addr: net.JoinHostPort("198.51.100.9", port)},
	}
	for i := range probes {
		probes[i].Timeout = time.Second
	}

	// attack sends p as the attacker: uid 65534 where the kernel lets it set
	// the route, else root in the namespace. Kernels since 6.x want
	// CAP_NET_RAW for IPv4 source route options (older ones do not), and a
	// container's root has CAP_NET_RAW by default in Docker and podman.
	attack := func(t *testing.T, ns *testnet.Netns, p testnet.Probe) testnet.Result {
		r := testnet.RunProbeAs(ns, nobody, p)
		if errors.Is(r.Err, syscall.EPERM) && strings.Contains(r.Err.Error(), "setsockopt") {
			t.Logf("%s: this kernel lets only CAP_NET_RAW set it; sending as root", p.Route)
			r = testnet.RunProbe(ns, p)
		}
		return r
	}

	// Unfenced, each probe reaches the proxy's namespace: the test can see
	// a packet get out. (The proxy's host drops it: it routes no source
	// routes; a router that does would send it on.)
	open := lab.AddClient(t)
	for _, p := range probes {
		before := obs.count()[p.Route]
		r := attack(t, open.Netns, p)
		if after := obs.count()[p.Route]; after == before {
			t.Fatalf("unfenced, the %s probe (%v) never reached the proxy's namespace: this test cannot tell a fence that stops it", p.Route, r.Err)
		}
	}

	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			e.create(startIn(t, client.Netns))
			for _, p := range probes {
				before := obs.count()[p.Route]
				r := attack(t, client.Netns, p)
				if after := obs.count()[p.Route]; after != before {
					t.Errorf("%s to %s via the proxy %s: %d packets left the fenced namespace and reached the proxy's", p.Route, p.Addr, p.Via, after-before)
				}
				// No refusal reaches the socket: the ICMP error (or reset)
				// names the first hop, and the socket is connected to the
				// final destination, so the kernel finds no socket for it
				// and the connect times out. What matters is that nothing
				// left.
				if r.Err == nil {
					t.Errorf("%s to %s via %s: connected", p.Route, p.Addr, p.Via)
				}
			}
			refusedAsNobody(t, client.Netns, lab.TCPV6)
		})
	}
}
