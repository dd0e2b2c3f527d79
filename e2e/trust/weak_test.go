// SPDX-License-Identifier: Apache-2.0

package trust

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// sent runs p and returns how many packets of kind reached the proxy's
// namespace. A datagram's send returns before the packet is on the wire (a
// fresh link resolves the neighbour first, and a fresh IPv6 address may
// still be tentative), so the count is read until it moves or wait has
// passed: long where a packet is expected, short where none should come.
func sent(t *testing.T, obs *observer, kind string, wait time.Duration, send func() testnet.Result) (uint64, testnet.Result) {
	t.Helper()
	before := obs.count()[kind]
	r := send()
	deadline := time.Now().Add(wait)
	for {
		n := obs.count()[kind] - before
		if n != 0 || time.Now().After(deadline) {
			return n, r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// otherProtocols: accept lets ICMP and ICMPv6 through and nothing else: on
// main it let UDP-Lite (and SCTP, DCCP, GRE, raw IP) pass to anywhere.
func TestOtherProtocolsAcceptIsICMPOnly(t *testing.T) {
	lab := testnet.NewLab(t)
	obs := observe(t, lab)
	probes := []testnet.Probe{
		{Kind: testnet.ProbeUDPLite, Addr: net.JoinHostPort(lab.ServerV4.String(), "4000"), Timeout: probeTimeout},
		{Kind: testnet.ProbeUDPLite, Addr: net.JoinHostPort(lab.ServerV6.String(), "4000"), Timeout: probeTimeout},
	}
	open := lab.AddClient(t)
	for _, p := range probes {
		if n, r := sent(t, obs, "udplite", 5*time.Second, func() testnet.Result { return testnet.RunProbeAs(open.Netns, nobody, p) }); n == 0 {
			t.Fatalf("unfenced, UDP-Lite to %s never reached the server (%v): this test cannot tell", p.Addr, r.Err)
		}
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "otherProtocols: accept\n")
			e.create(startIn(t, client.Netns))
			for _, p := range probes {
				n, r := sent(t, obs, "udplite", time.Second, func() testnet.Result { return testnet.RunProbeAs(client.Netns, nobody, p) })
				if n != 0 || r.Err == nil {
					t.Errorf("UDP-Lite to %s as uid %d under otherProtocols: accept: %d packets reached the server, error %v; want it refused", p.Addr, nobody, n, r.Err)
				}
			}
			// ICMPv6 still passes: ping is what otherProtocols: accept is for.
			echo := testnet.Probe{Kind: testnet.ProbeICMPv6, Addr: "[2001:db8:1::1]:0", ICMPType: 128, Timeout: probeTimeout}
			if n, r := sent(t, obs, "echo6", 5*time.Second, func() testnet.Result { return testnet.RunProbe(client.Netns, echo) }); n == 0 || r.Err != nil {
				t.Errorf("ICMPv6 echo under otherProtocols: accept: %d reached the server, %v; want it through", n, r.Err)
			}
		})
	}
}

// Neighbour discovery passes only with hop limit 255 (RFC 4861): on main a
// neighbour solicitation to any address with any hop limit passed, a
// channel out for a process that can send ICMPv6 (CAP_NET_RAW: a
// container's root by default).
func TestNeighbourDiscoveryHopLimit(t *testing.T) {
	lab := testnet.NewLab(t)
	obs := observe(t, lab)
	p := testnet.Probe{Kind: testnet.ProbeICMPv6, Addr: "[2001:db8:1::1]:0", ICMPType: 135, HopLimit: 64, Timeout: probeTimeout}
	open := lab.AddClient(t)
	if n, r := sent(t, obs, "nd_hoplimit", 5*time.Second, func() testnet.Result { return testnet.RunProbe(open.Netns, p) }); n == 0 {
		t.Fatalf("unfenced, a neighbour solicitation with hop limit 64 never reached the server (%v): this test cannot tell", r.Err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			e.create(startIn(t, client.Netns))
			if n, r := sent(t, obs, "nd_hoplimit", time.Second, func() testnet.Result { return testnet.RunProbe(client.Netns, p) }); n != 0 {
				t.Errorf("a neighbour solicitation with hop limit 64 left the fence: %d packets reached the server (%v)", n, r.Err)
			}
			// Real neighbour discovery (hop limit 255) still works: the
			// proxy is reachable over IPv6 from a fresh neighbour cache.
			client.Exec(t, "ip", "-6", "neigh", "flush", "all")
			testnet.ExpectFenced(t, client.Netns, lab)
		})
	}
}

// allowUids with CAP_SETUID: a root process that can setuid becomes an
// allowed uid. The hook warns as for NET_ADMIN and NET_RAW, and strict
// refuses it.
func TestSetuidWithAllowUids(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, strict := range []bool{false, true} {
		t.Run("strict="+strconv.FormatBool(strict), func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, "nftables", "allowUids: [1337]\nstrict: "+strconv.FormatBool(strict)+"\n")
			c := startIn(t, client.Netns)
			withCaps(t, c, "CAP_SETUID")
			code, _, stderr := e.run(c.state(specs.StateCreating), "create")
			if strict {
				if code != 1 || !strings.Contains(stderr, "CAP_SETUID") {
					t.Errorf("strict, allowUids and CAP_SETUID: exit %d, stderr %q; want exit 1 naming CAP_SETUID", code, stderr)
				}
				return
			}
			e.t.Cleanup(func() { e.run(c.state(specs.StateStopped), "poststop") })
			if code != 0 {
				t.Fatalf("create: exit %d: %s", code, stderr)
			}
			if log := e.log(); !strings.Contains(log, "CAP_SETUID") || !strings.Contains(log, `"level":"warning"`) {
				t.Errorf("no warning naming CAP_SETUID in the hook log:\n%s", log)
			}
		})
	}
	// Without allowUids, CAP_SETUID opens nothing: no warning, strict allows it.
	client := lab.AddClient(t)
	e := newEnv(t, lab, "nftables", "strict: true\n")
	c := startIn(t, client.Netns)
	withCaps(t, c, "CAP_SETUID")
	e.create(c)
	if log := e.log(); strings.Contains(log, "CAP_SETUID") {
		t.Errorf("CAP_SETUID without allowUids was warned about:\n%s", log)
	}
}

// withCaps gives c's process the capabilities in its bundle's config.json.
func withCaps(t *testing.T, c *container, caps ...string) {
	t.Helper()
	path := filepath.Join(c.bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	b, _ = json.Marshal(spec)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
