// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The lab's fixed plan. 198.51.100.128/25 belongs to another team: stay in the
// lower half.
const (
	LabBody   = "hello from the lab server\n" // what the lab's HTTP server answers
	ProxyPort = 3128                          // tinyproxy
	HTTPPort  = 8080                          // Go HTTP server
	TCPPort   = 9090                          // accepts and closes
	UDPPort   = 5353                          // echoes

	firstClient = 10
	lastClient  = 126 // .127 is the /25's broadcast
	bridgeName  = "br0"
	// A fixed MAC, so the bridge's address does not change as ports join
	// (clients would keep a stale neighbour entry for seconds).
	bridgeMAC = "02:42:c6:33:64:01"
)

var (
	labV4Prefix = netip.MustParsePrefix("198.51.100.0/25")
	labV6Prefix = netip.MustParsePrefix("2001:db8:1::/64")
)

// Lab is a server namespace with a bridge that clients plug into, running
// tinyproxy and small servers. All addresses are on the bridge.
type Lab struct {
	Server   *Netns
	ServerV4 netip.Addr // 198.51.100.1
	ServerV6 netip.Addr // 2001:db8:1::1

	ProxyV4, ProxyV6 string // "198.51.100.1:3128", "[2001:db8:1::1]:3128"
	HTTPV4, HTTPV6   string // host:port of the HTTP server (8080)
	URLV4, URLV6     string // "http://198.51.100.1:8080/", "http://[2001:db8:1::1]:8080/"
	TCPV4, TCPV6     string // host:port of the accept-and-close listener (9090)
	UDPV4, UDPV6     string // host:port of the UDP echo server (5353)
	ProxyLog         string // tinyproxy's log file

	mu   sync.Mutex
	used map[int]bool
}

// Client is a namespace plugged into the lab's bridge through a veth pair, with
// default routes via the server for both families.
type Client struct {
	*Netns
	V4, V6 netip.Addr // 198.51.100.N, 2001:db8:1::N (same N, 10..126)
	Lab    *Lab
}

// NewLab builds the server namespace and starts tinyproxy, the HTTP server,
// the TCP listener and the UDP echo server; all stop at cleanup.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip", "nsenter", "tinyproxy")
	srv := NewNetns(t)
	v4 := netip.MustParseAddr("198.51.100.1")
	v6 := netip.MustParseAddr("2001:db8:1::1")
	hp := func(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }
	l := &Lab{
		Server: srv, ServerV4: v4, ServerV6: v6,
		ProxyV4: hp(v4, ProxyPort), ProxyV6: hp(v6, ProxyPort),
		HTTPV4: hp(v4, HTTPPort), HTTPV6: hp(v6, HTTPPort),
		TCPV4: hp(v4, TCPPort), TCPV6: hp(v6, TCPPort),
		UDPV4: hp(v4, UDPPort), UDPV6: hp(v6, UDPPort),
		used: map[int]bool{},
	}
	l.URLV4, l.URLV6 = "http://"+l.HTTPV4+"/", "http://"+l.HTTPV6+"/"

	// nodad: an address under duplicate address detection cannot be bound or
	// used for about a second. No snooping: an MLD report sent before a port
	// joined would otherwise be missed, and neighbour discovery with it.
	batch := fmt.Sprintf(`link set lo up
link add %[1]s address %[2]s type bridge mcast_snooping 0 forward_delay 0
link set %[1]s up
addr add %[3]s/25 dev %[1]s
addr add %[4]s/64 dev %[1]s nodad
`, bridgeName, bridgeMAC, v4, v6)
	if _, err := run(batch, "ip", "-n", srv.Name, "-batch", "-"); err != nil {
		t.Fatalf("testnet: lab server %s: %v", srv.Name, err)
	}
	l.startServers(t)
	l.startProxy(t)
	return l
}

// startServers opens the listening sockets inside the server namespace and
// serves them from goroutines of the test process.
func (l *Lab) startServers(t testing.TB) {
	t.Helper()
	tcp, udp, err := l.listen()
	if err != nil {
		t.Fatalf("testnet: lab servers in %s: %v", l.Server.Name, err)
	}

	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Remote-Addr", r.RemoteAddr) // who reached us, for tests that care
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, LabBody)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	var wg sync.WaitGroup
	for _, ln := range tcp[:2] {
		wg.Go(func() { hs.Serve(ln) })
	}
	for _, ln := range tcp[2:] {
		wg.Go(func() { acceptAndClose(ln) })
	}
	for _, pc := range udp {
		wg.Go(func() { echo(pc) })
	}
	t.Cleanup(func() {
		hs.Close()
		closeAll(tcp, udp)
		wg.Wait()
	})
}

// listen opens, inside the server namespace, the HTTP and then the
// accept-and-close listeners of both families, and the UDP echo sockets.
// On error none is left open.
func (l *Lab) listen() ([]net.Listener, []net.PacketConn, error) {
	var tcp []net.Listener
	var udp []net.PacketConn
	err := l.Server.Do(func() error {
		var lc net.ListenConfig
		ctx := context.Background()
		for _, a := range []struct{ netw, addr string }{
			{"tcp4", l.HTTPV4}, {"tcp6", l.HTTPV6}, {"tcp4", l.TCPV4}, {"tcp6", l.TCPV6},
		} {
			ln, err := lc.Listen(ctx, a.netw, a.addr)
			if err != nil {
				return err
			}
			tcp = append(tcp, ln)
		}
		for _, a := range []struct{ netw, addr string }{{"udp4", l.UDPV4}, {"udp6", l.UDPV6}} {
			pc, err := lc.ListenPacket(ctx, a.netw, a.addr)
			if err != nil {
				return err
			}
			udp = append(udp, pc)
		}
		return nil
	})
	if err != nil {
		closeAll(tcp, udp)
		return nil, nil, err
	}
	return tcp, udp, nil
}

func closeAll(tcp []net.Listener, udp []net.PacketConn) {
	for _, ln := range tcp {
		ln.Close()
	}
	for _, pc := range udp {
		pc.Close()
	}
}

// acceptAndClose closes every connection it accepts, until ln is closed.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// echo sends every datagram back to where it came from, until pc is closed.
func echo(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// startProxy runs tinyproxy in the foreground inside the server namespace and
// waits until it accepts on both families.
func (l *Lab) startProxy(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "tinyproxy.conf")
	l.ProxyLog = filepath.Join(dir, "tinyproxy.log")
	if err := writeProxyConf(conf); err != nil {
		t.Fatalf("testnet: %v", err)
	}
	logf, err := os.Create(l.ProxyLog)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	defer logf.Close()
	tp, err := Tool("tinyproxy")
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	cmd := l.Server.Command(context.Background(), tp, "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Dies with the test process even when cleanup never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testnet: starting tinyproxy in %s: %v", l.Server.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	l.waitForProxy(t, exited)
}

// writeProxyConf writes tinyproxy's config for the lab to path.
func writeProxyConf(path string) error {
	// No Listen line: tinyproxy binds 0.0.0.0 and [::]. No ConnectPort line:
	// CONNECT is allowed to every port (8080 included). No User: it runs as
	// root with a warning, and needs no file of ours to be readable by others.
	cfg := fmt.Sprintf(`Port %d
Timeout 30
MaxClients 1000
Allow %s
Allow %s
LogLevel Info
DisableViaHeader Yes
`, ProxyPort, labV4Prefix, labV6Prefix)
	return os.WriteFile(path, []byte(cfg), 0o644)
}

// waitForProxy waits up to 10s for tinyproxy to accept on both families,
// and fails the test at once if it exits; exited has its Wait's result.
func (l *Lab) waitForProxy(t testing.TB, exited chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range []string{l.ProxyV4, l.ProxyV6} {
		for {
			_, err := DialTCP(l.Server, addr, time.Second)
			if err == nil {
				break
			}
			select {
			case werr := <-exited:
				exited <- werr // for the cleanup
				t.Fatalf("testnet: tinyproxy exited (%v); log %s:\n%s", werr, l.ProxyLog, readFile(l.ProxyLog))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("testnet: tinyproxy not accepting on %s after 10s: %v; log:\n%s", addr, err, readFile(l.ProxyLog))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// AddClient makes a namespace linked into the lab's bridge with the next free
// 198.51.100.N/25 and 2001:db8:1::N/64, loopback up, and default routes via
// the server. The address is freed at cleanup.
func (l *Lab) AddClient(t testing.TB) *Client {
	t.Helper()
	return l.Plug(t, NewNetns(t))
}

// Plug links a namespace that exists already into the lab's bridge, as
// AddClient does a new one: a container's, by its process
// (&Netns{Name: "ctr-web", Path: "/proc/PID/ns/net"}), where the runtime
// made the namespace and the test wires it afterwards. When the namespace
// dies first (the container stopped), its veth pair dies with it.
func (l *Lab) Plug(t testing.TB, ns *Netns) *Client {
	t.Helper()
	n := l.allocate()
	if n == 0 {
		t.Fatalf("testnet: lab %s has no free client address (%d in use)", l.Server.Name, lastClient-firstClient+1)
	}
	t.Cleanup(func() { l.release(n) }) // runs last, after the veth is gone
	v4 := labV4Prefix.Addr().As4()
	v4[3] = byte(n)
	v6 := labV6Prefix.Addr().As16()
	v6[15] = byte(n)
	c := &Client{Netns: ns, V4: netip.AddrFrom4(v4), V6: netip.AddrFrom16(v6), Lab: l}
	peer := "v" + strconv.Itoa(n) // the bridge port, in the server namespace

	batch := fmt.Sprintf(`link set lo up
link add eth0 type veth peer name %[1]s netns %[2]s
link set eth0 up
addr add %[3]s/25 dev eth0
addr add %[4]s/64 dev eth0 nodad
route add default via %[5]s
route add default via %[6]s
`, peer, l.Server.Name, c.V4, c.V6, l.ServerV4, l.ServerV6)
	if _, err := run(batch, "nsenter", "--net="+ns.Path, "--", "ip", "-batch", "-"); err != nil {
		t.Fatalf("testnet: lab client %s: %v", ns.Name, err)
	}
	// Delete the pair explicitly: a process still holding the client namespace
	// (a container) would otherwise keep N's address on the bridge.
	t.Cleanup(func() {
		if _, err := run("", "ip", "-n", l.Server.Name, "link", "show", peer); err != nil {
			return // gone with the client's namespace
		}
		if _, err := run("", "ip", "-n", l.Server.Name, "link", "del", peer); err != nil {
			// The kernel tears a dead namespace down in the background: the
			// pair may go between the look and the delete.
			if _, gone := run("", "ip", "-n", l.Server.Name, "link", "show", peer); gone != nil {
				return
			}
			t.Errorf("testnet: removing client %s's veth: %v", ns.Name, err)
		}
	})
	if _, err := run("", "ip", "-n", l.Server.Name, "link", "set", peer, "master", bridgeName, "up"); err != nil {
		t.Fatalf("testnet: plugging client %s into the bridge: %v", ns.Name, err)
	}
	return c
}

func (l *Lab) allocate() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := firstClient; n <= lastClient; n++ {
		if !l.used[n] {
			l.used[n] = true
			return n
		}
	}
	return 0
}

func (l *Lab) release(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.used, n)
}
