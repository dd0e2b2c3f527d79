// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/monitor/attrib/attribtest"
)

func TestMain(m *testing.M) {
	attribtest.MaybeAttempt()
	os.Exit(testnet.GuardHost(m))
}

// refusingNetns is a namespace whose output rules refuse what goes to
// 198.51.100.9 and 2001:db8:a7::9, as a fence does (TCP with a reset, the
// rest with an ICMP error, both of which drop the packet).
func refusingNetns(t testing.TB) *testnet.Netns {
	t.Helper()
	testnet.RequireTools(t, "nft")
	ns := testnet.NewNetns(t)
	ns.Exec(t, "ip", "link", "set", "lo", "up")
	ns.Exec(t, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.Exec(t, "ip", "link", "set", "d0", "up")
	ns.Exec(t, "ip", "link", "set", "d1", "up")
	ns.Exec(t, "ip", "addr", "add", "198.51.100.2/24", "dev", "d0")
	ns.Exec(t, "ip", "addr", "add", "2001:db8:a7::2/64", "dev", "d0", "nodad")
	ns.Exec(t, "nft", "add table inet t; add chain inet t o { type filter hook output priority 0; };"+
		" add rule inet t o meta l4proto tcp ip daddr 198.51.100.9 reject with tcp reset;"+
		" add rule inet t o meta l4proto tcp ip6 daddr 2001:db8:a7::9 reject with tcp reset;"+
		" add rule inet t o ip daddr 198.51.100.9 reject;"+
		" add rule inet t o ip6 daddr 2001:db8:a7::9 reject")
	return ns
}

func loadTracer(t *testing.T) *Tracer {
	t.Helper()
	testnet.RequireRoot(t)
	tr, err := Load("")
	if err != nil {
		t.Fatalf("loading the attribution programs on a kernel that supports them: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// attemptsTo lists what the kernel filed for packets to dst.
func (t *Tracer) attemptsTo(dst netip.Addr) []Flow {
	var out []Flow
	var k attribFlow
	var v attribAttempt
	it := t.objs.Attempts.Iterate()
	for it.Next(&k, &v) {
		if f := flowOf(k); f.Dst == dst {
			out = append(out, f)
		}
	}
	return out
}

// TestNamesWhoTried: programs that make one refused attempt each and exit
// at once, as nobody, are named by their pid and executable, from what the
// kernel noted when they tried; and a namespace not fenced is not looked at.
func TestNamesWhoTried(t *testing.T) {
	tr := loadTracer(t)
	ns := refusingNetns(t)
	cookie, err := NetnsCookie(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Fence(cookie); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, proto, addr string }{
		{"try-tcp4", "tcp", "198.51.100.9:443"},
		{"try-tcp6", "tcp", "[2001:db8:a7::9]:443"},
		{"try-udp4", "udp", "198.51.100.9:53"},
		{"try-udp6", "udp", "[2001:db8:a7::9]:53"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := attribtest.NewProgram(t, c.name)
			dst := netip.MustParseAddrPort(c.addr)
			before := tr.attemptsTo(dst.Addr())
			pid := p.Run(t, ns, c.proto, c.addr)
			var got *Process
			for _, f := range tr.attemptsTo(dst.Addr()) {
				if slices.Contains(before, f) {
					continue
				}
				if f.Netns != cookie || f.Dport != dst.Port() || map[string]uint8{"tcp": 6, "udp": 17}[c.proto] != f.Proto {
					t.Errorf("filed under %+v; want namespace %d, port %d, %s", f, cookie, dst.Port(), c.proto)
				}
				proc, ok := tr.Lookup(f)
				if !ok {
					t.Fatalf("Lookup(%+v) found nothing", f)
				}
				got = &proc
			}
			if got == nil {
				t.Fatalf("no attempt filed for %s", c.addr)
			}
			checkProcess(t, *got, pid, c.name)
		})
	}

	// Two programs at the same moment, to the same destination.
	a, b := attribtest.NewProgram(t, "try-first"), attribtest.NewProgram(t, "try-second")
	at := time.Now().Add(300 * time.Millisecond)
	ca, err := a.Start(ns, "tcp", "198.51.100.9:80", at)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Start(ns, "tcp", "198.51.100.9:80", at)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cb.Wait(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]Process{}
	for _, f := range tr.attemptsTo(netip.MustParseAddr("198.51.100.9")) {
		if f.Dport != 80 {
			continue
		}
		p, ok := tr.Lookup(f)
		if !ok {
			t.Fatalf("Lookup(%+v) found nothing", f)
		}
		seen[p.Exe] = p
	}
	checkProcess(t, seen["try-first"], ca.Process.Pid, "try-first")
	checkProcess(t, seen["try-second"], cb.Process.Pid, "try-second")

	// Unfenced, the namespace is not looked at.
	if err := tr.Unfence(cookie); err != nil {
		t.Fatal(err)
	}
	attribtest.NewProgram(t, "try-unfenced").Run(t, ns, "tcp", "198.51.100.9:443")
	for _, f := range tr.attemptsTo(netip.MustParseAddr("198.51.100.9")) {
		t.Errorf("an attempt of a namespace no longer fenced was filed: %+v", f)
	}
}

// TestNamesTheSenderOfAHandedSocket: a UDP socket connected by one program
// and handed to another that sends on it, across an exec (the same pid) or
// over a unix socket (a child): the send names no address, so no cgroup
// sendmsg program notes the sender; the attempt is named after it all the
// same, not after the program that connected.
func TestNamesTheSenderOfAHandedSocket(t *testing.T) {
	tr := loadTracer(t)
	ns := refusingNetns(t)
	cookie, err := NetnsCookie(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Fence(cookie); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"udp-exec", "udp-unix"} {
		for _, addr := range []string{"198.51.100.9:53", "[2001:db8:a7::9]:53"} {
			t.Run(mode+" "+addr, func(t *testing.T) {
				sender := attribtest.NewProgram(t, "try-sender")
				dst := netip.MustParseAddrPort(addr)
				before := tr.attemptsTo(dst.Addr())
				pid := attribtest.NewProgram(t, "try-connector").Run(t, ns, mode, addr+" "+sender.Path)
				var filed []Flow
				for _, f := range tr.attemptsTo(dst.Addr()) {
					if !slices.Contains(before, f) {
						filed = append(filed, f)
					}
				}
				if len(filed) != 1 || filed[0].Proto != 17 || filed[0].Dport != 53 {
					t.Fatalf("filed %+v; want one UDP attempt to port 53", filed)
				}
				p, ok := tr.Lookup(filed[0])
				if !ok {
					t.Fatalf("Lookup(%+v) found nothing", filed[0])
				}
				if mode == "udp-exec" {
					checkProcess(t, p, pid, "try-sender")
					return
				}
				// The connector's child, of the sender's name.
				if p.Exe != "try-sender" || p.Ppid != uint32(pid) || p.Pid == uint32(pid) || p.UID != testnet.Nobody {
					t.Errorf("attempt named %+v; want exe try-sender, a child of %d, uid %d", p, pid, testnet.Nobody)
				}
			})
		}
	}
}

func checkProcess(t *testing.T, p Process, pid int, exe string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		t.Errorf("pid %d is still in /proc: the test means to check a process that is gone", pid)
	}
	if int(p.Pid) != pid || p.Exe != exe || p.UID != testnet.Nobody || p.GID != testnet.Nobody {
		t.Errorf("attempt named %+v; want pid %d, exe %s, uid and gid %d", p, pid, exe, testnet.Nobody)
	}
	// Not in a pid namespace of its own: the same number.
	if int(p.PidInContainer) != pid || p.Comm == "" || p.Ppid != uint32(os.Getpid()) {
		t.Errorf("attempt named %+v; want pid in container %d, a comm, parent %d", p, pid, os.Getpid())
	}
}

// TestNamesAuditedTCP: a TCP connection the fence lets through (audit
// mode: nothing is dropped) is filed as its SYN leaves, by the sockops
// program, and named after the program that made it.
func TestNamesAuditedTCP(t *testing.T) {
	tr := loadTracer(t)
	ns := refusingNetns(t)
	cookie, err := NetnsCookie(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Fence(cookie); err != nil {
		t.Fatal(err)
	}
	// Not refused: the SYN leaves, nothing answers.
	dst := netip.MustParseAddr("198.51.100.8")
	pid := attribtest.NewProgram(t, "try-audited").Run(t, ns, "tcp", "198.51.100.8:443")
	filed := tr.attemptsTo(dst)
	if len(filed) != 1 || filed[0].Dport != 443 || filed[0].Proto != 6 {
		t.Fatalf("filed %+v; want one TCP attempt to port 443", filed)
	}
	p, ok := tr.Lookup(filed[0])
	if !ok {
		t.Fatalf("Lookup(%+v) found nothing", filed[0])
	}
	checkProcess(t, p, pid, "try-audited")
}

// TestLoadWithoutOptional: on a kernel that refuses the optional programs
// (sock_create, sockops, sock_send_length), Load says what is missing and
// a refused attempt is still named.
func TestLoadWithoutOptional(t *testing.T) {
	testnet.RequireRoot(t)
	was := loadAll
	loadAll = func(*ebpf.CollectionSpec, *attribObjects) error {
		return errors.New("refused as an older kernel would")
	}
	defer func() { loadAll = was }()
	tr := loadTracer(t)
	if len(tr.Missing) != 1 || !strings.Contains(tr.Missing[0], "older kernel") || tr.WatchesVsock() {
		t.Errorf("Missing %q, watches AF_VSOCK %v; want the reason, and no AF_VSOCK", tr.Missing, tr.WatchesVsock())
	}
	ns := refusingNetns(t)
	cookie, err := NetnsCookie(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Fence(cookie); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddr("198.51.100.9")
	pid := attribtest.NewProgram(t, "try-required").Run(t, ns, "tcp", "198.51.100.9:443")
	filed := tr.attemptsTo(dst)
	if len(filed) != 1 {
		t.Fatalf("filed %+v; want the one refused attempt", filed)
	}
	p, ok := tr.Lookup(filed[0])
	if !ok {
		t.Fatalf("Lookup(%+v) found nothing", filed[0])
	}
	checkProcess(t, p, pid, "try-required")
}
