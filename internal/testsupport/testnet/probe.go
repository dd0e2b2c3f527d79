// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Probe kinds.
const (
	ProbeTCP         = "tcp"          // connect to Addr
	ProbeUDP         = "udp"          // send to Addr on a connected socket, expect the echo
	ProbeHTTP        = "http"         // GET URL directly
	ProbeHTTPProxy   = "http-proxy"   // GET URL through the proxy at Proxy (absolute-form request)
	ProbeHTTPConnect = "http-connect" // CONNECT to URL's host through Proxy, then GET URL in the tunnel
	ProbeLoopback    = "loopback"     // listen on 127.0.0.1 and [::1] and connect to both
	ProbeUDPLite     = "udplite"      // send one UDP-Lite datagram to Addr (nothing answers)
	ProbeICMPv6      = "icmpv6"       // send one ICMPv6 message of ICMPType with HopLimit to Addr's IP (raw socket: root)
)

// Source routes a ProbeTCP can ask for (Probe.Route), as an attacker would:
// an unprivileged socket may set each of them. The packet leaves with Via
// as its destination and carries Addr's address in the route.
const (
	RouteSRH  = "srh"  // IPv6 routing header type 4 (segment routing), IPV6_RTHDR
	RouteLSRR = "lsrr" // IPv4 loose source route option, IP_OPTIONS
	RouteSSRR = "ssrr" // IPv4 strict source route option, IP_OPTIONS
)

// DefaultTimeout applies to a Probe whose Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Probe says what to try from inside a namespace. It is plain data so it can
// be handed to a re-executed test binary (RunProbeAs).
type Probe struct {
	Kind    string
	Addr    string // ProbeTCP, ProbeUDP: "ip:port" or "[ip6]:port"
	Proxy   string // ProbeHTTPProxy, ProbeHTTPConnect: "ip:port"
	URL     string // ProbeHTTP*: "http://ip:port/path"
	Timeout time.Duration

	// Route and Via make a ProbeTCP source-routed: the first hop is Via (an
	// IP address), the final destination Addr.
	Route string
	Via   string

	ICMPType int // ProbeICMPv6
	HopLimit int // ProbeICMPv6; 0 means the kernel's default
}

// Result is what a probe saw. Err keeps the errno, so errors.Is(Err,
// syscall.ECONNREFUSED) works, and IsTimeout(Err) tells a timeout.
type Result struct {
	Body    string // HTTP body
	Elapsed time.Duration
	Err     error
}

// IsTimeout reports whether err is a probe's timeout (nothing came back).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// DialTCP connects to addr from inside ns and closes at once.
func DialTCP(ns *Netns, addr string, timeout time.Duration) (time.Duration, error) {
	r := RunProbe(ns, Probe{Kind: ProbeTCP, Addr: addr, Timeout: timeout})
	return r.Elapsed, r.Err
}

// UDPExchange sends a datagram to addr on a connected socket and waits for the
// same bytes back; an ICMP port unreachable shows as ECONNREFUSED.
func UDPExchange(ns *Netns, addr string, timeout time.Duration) (time.Duration, error) {
	r := RunProbe(ns, Probe{Kind: ProbeUDP, Addr: addr, Timeout: timeout})
	return r.Elapsed, r.Err
}

// HTTPDirect GETs url without a proxy; a status other than 200 is an error.
func HTTPDirect(ns *Netns, url string, timeout time.Duration) (string, time.Duration, error) {
	r := RunProbe(ns, Probe{Kind: ProbeHTTP, URL: url, Timeout: timeout})
	return r.Body, r.Elapsed, r.Err
}

// HTTPViaProxy GETs url through the HTTP proxy at proxy ("GET http://..."),
// the way HTTP_PROXY is used for plain HTTP.
func HTTPViaProxy(ns *Netns, proxy, url string, timeout time.Duration) (string, time.Duration, error) {
	r := RunProbe(ns, Probe{Kind: ProbeHTTPProxy, Proxy: proxy, URL: url, Timeout: timeout})
	return r.Body, r.Elapsed, r.Err
}

// HTTPConnect opens a CONNECT tunnel through proxy to url's host and GETs url
// inside it, the way HTTPS_PROXY is used (without TLS).
func HTTPConnect(ns *Netns, proxy, url string, timeout time.Duration) (string, time.Duration, error) {
	r := RunProbe(ns, Probe{Kind: ProbeHTTPConnect, Proxy: proxy, URL: url, Timeout: timeout})
	return r.Body, r.Elapsed, r.Err
}

// Loopback listens on 127.0.0.1 and [::1] inside ns and connects to both.
func Loopback(ns *Netns, timeout time.Duration) (time.Duration, error) {
	r := RunProbe(ns, Probe{Kind: ProbeLoopback, Timeout: timeout})
	return r.Elapsed, r.Err
}

// RunProbe runs p inside ns, from this process (as root).
func RunProbe(ns *Netns, p Probe) Result {
	if ns == nil {
		// Never fall back to the host's namespace: its routes lead out of the machine.
		return Result{Err: errors.New("testnet: probe with a nil namespace")}
	}
	return runProbe(nsSockets{ns}, p)
}

// sockets makes sockets somewhere: inside a Netns (RunProbe) or in the
// process's own namespace (the re-executed child of RunProbeAs, which nsenter
// put there).
type sockets interface {
	dial(ctx context.Context, network, addr string) (net.Conn, error)
	dialWith(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error)
	// do runs fn where the sockets are made.
	do(fn func() error) error
	listen(network, addr string) (net.Listener, error)
	where() string
}

type nsSockets struct{ ns *Netns }

func (s nsSockets) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.dialWith(ctx, &net.Dialer{}, network, addr)
}

func (s nsSockets) dialWith(ctx context.Context, d *net.Dialer, network, addr string) (c net.Conn, err error) {
	if derr := s.ns.Do(func() error {
		c, err = d.DialContext(ctx, network, addr)
		return nil
	}); derr != nil {
		return nil, derr
	}
	return c, err
}

func (s nsSockets) listen(network, addr string) (l net.Listener, err error) {
	if derr := s.ns.Do(func() error {
		l, err = net.Listen(network, addr)
		return nil
	}); derr != nil {
		return nil, derr
	}
	return l, err
}

func (s nsSockets) do(fn func() error) error { return s.ns.Do(fn) }

func (s nsSockets) where() string { return "netns " + s.ns.Name }

type ownSockets struct{ label string }

func (ownSockets) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
func (ownSockets) dialWith(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	return d.DialContext(ctx, network, addr)
}
func (ownSockets) listen(network, addr string) (net.Listener, error) {
	return net.Listen(network, addr)
}
func (ownSockets) do(fn func() error) error { return fn() }
func (s ownSockets) where() string          { return s.label }

func runProbe(s sockets, p Probe) Result {
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()
	var body string
	var err error
	switch p.Kind {
	case ProbeTCP:
		d := &net.Dialer{}
		if p.Route != "" {
			d.Control, err = sourceRoute(p.Route, p.Via)
		}
		var c net.Conn
		if err == nil {
			if c, err = s.dialWith(ctx, d, "tcp", p.Addr); err == nil {
				c.Close()
			}
		}
	case ProbeUDP:
		err = udpExchange(ctx, s, p.Addr)
	case ProbeHTTP, ProbeHTTPProxy:
		body, err = httpGet(ctx, s, p)
	case ProbeHTTPConnect:
		body, err = httpConnect(ctx, s, p)
	case ProbeLoopback:
		err = loopback(ctx, s)
	case ProbeUDPLite:
		err = s.do(func() error { return sendRaw(p.Addr, unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE, 0, []byte("bh-probe")) })
	case ProbeICMPv6:
		// Type, code 0, checksum (the kernel computes it), 4 bytes of
		// body, a target address of zeros: enough for a counter to see.
		msg := append([]byte{byte(p.ICMPType), 0, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...)
		err = s.do(func() error { return sendRaw(p.Addr, unix.SOCK_RAW, unix.IPPROTO_ICMPV6, p.HopLimit, msg) })
	default:
		err = fmt.Errorf("unknown probe kind %q", p.Kind)
	}
	r := Result{Body: body, Elapsed: time.Since(start), Err: err}
	if err != nil {
		r.Err = fmt.Errorf("testnet: %s probe %s from %s (after %v): %w",
			p.Kind, target(p), s.where(), r.Elapsed.Round(time.Microsecond), err)
	}
	return r
}

func target(p Probe) string {
	switch {
	case p.Route != "":
		return p.Addr + " by " + p.Route + " via " + p.Via
	case p.Proxy != "":
		return p.URL + " via " + p.Proxy
	case p.URL != "":
		return p.URL
	}
	return p.Addr
}

// sourceRoute returns a dialer's Control that sets the route on the socket
// before connect(). The kernel puts the final destination (the address the
// socket connects to) into the route itself and sends the packet to via.
func sourceRoute(route, via string) (func(network, address string, c syscall.RawConn) error, error) {
	hop, err := netip.ParseAddr(via)
	if err != nil {
		return nil, fmt.Errorf("source route via %q: %w", via, err)
	}
	var level, opt int
	var val []byte
	switch {
	case route == RouteSRH && hop.Is6():
		// RFC 8754: next header (the kernel fills it in), length in 8-byte
		// units after the first 8, type 4, segments left 1, last entry 1,
		// flags, tag; then the segments in reverse order: [0] is the final
		// destination (the kernel writes it), [1] the first hop.
		val = []byte{0, 4, 4, 1, 1, 0, 0, 0}
		val = append(val, make([]byte, 16)...)
		val = append(val, hop.AsSlice()...)
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RTHDR
	case (route == RouteLSRR || route == RouteSSRR) && hop.Is4():
		// RFC 791: type, length, pointer 4, the first hop (the kernel
		// takes it out and puts the final destination in its place), end
		// of options as padding to 8 bytes.
		typ := byte(0x83)
		if route == RouteSSRR {
			typ = 0x89
		}
		val = append([]byte{typ, 7, 4}, hop.AsSlice()...)
		val = append(val, 0)
		level, opt = unix.IPPROTO_IP, unix.IP_OPTIONS
	default:
		return nil, fmt.Errorf("source route %q via %s: not a route this probe knows for that family", route, via)
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), level, opt, string(val))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt %s: %w", route, serr)
		}
		return nil
	}, nil
}

// sendRaw sends msg once on a socket of the given type and protocol,
// connected to addr ("ip:port", or "[ip6]:0" for a raw socket). A refusal
// of the fence shows as the send's error, or as the error the next send
// finds queued.
func sendRaw(addr string, typ, proto, hopLimit int, msg []byte) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	port := int(ap.Port())
	if typ == unix.SOCK_RAW {
		port = 0 // the protocol field's place
	}
	var family int
	var sa unix.Sockaddr
	if ap.Addr().Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: port}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: port}
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if hopLimit > 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, hopLimit); err != nil {
			return fmt.Errorf("setsockopt IPV6_UNICAST_HOPS: %w", err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if _, err := unix.Write(fd, msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	time.Sleep(50 * time.Millisecond) // let an ICMP error come back
	if _, err := unix.Write(fd, msg); err != nil {
		return fmt.Errorf("second send: %w", err)
	}
	return nil
}

func udpExchange(ctx context.Context, s sockets, addr string) error {
	c, err := s.dial(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	b := make([]byte, 8)
	rand.Read(b)
	msg := []byte("bh-probe-" + hex.EncodeToString(b))
	if _, werr := c.Write(msg); werr != nil {
		// A REJECT in OUTPUT fails the send (EPERM) and also queues the ICMP
		// error on the socket: report both, so errors.Is finds either.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, rerr := c.Read(make([]byte, 1)); rerr != nil && !IsTimeout(rerr) {
			return fmt.Errorf("send: %w; then receive: %w", werr, rerr)
		}
		return fmt.Errorf("send: %w", werr)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if !bytes.Equal(buf[:n], msg) {
		return fmt.Errorf("echo mismatch: sent %q, got %q", msg, buf[:n])
	}
	return nil
}

func httpGet(ctx context.Context, s sockets, p Probe) (string, error) {
	tr := &http.Transport{DialContext: s.dial, DisableKeepAlives: true}
	if p.Kind == ProbeHTTPProxy {
		pu, err := url.Parse("http://" + p.Proxy)
		if err != nil {
			return "", fmt.Errorf("bad proxy %q: %w", p.Proxy, err)
		}
		tr.Proxy = http.ProxyURL(pu)
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	return readBody(resp)
}

func httpConnect(ctx context.Context, s sockets, p Probe) (string, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return "", err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	c, err := s.dial(ctx, "tcp", p.Proxy)
	if err != nil {
		return "", fmt.Errorf("connecting to proxy: %w", err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host); err != nil {
		return "", fmt.Errorf("sending CONNECT: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", fmt.Errorf("reading CONNECT answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("proxy answered CONNECT %s with %s: %s", host, resp.Status, strings.TrimSpace(string(b)))
	}
	req, err := http.NewRequest(http.MethodGet, p.URL, nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	if err := req.Write(c); err != nil {
		return "", fmt.Errorf("sending GET in tunnel: %w", err)
	}
	resp, err = http.ReadResponse(br, req)
	if err != nil {
		return "", fmt.Errorf("reading answer in tunnel: %w", err)
	}
	return readBody(resp)
}

func readBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return string(b), fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("HTTP status %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

func loopback(ctx context.Context, s sockets) error {
	for _, a := range []struct{ netw, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		ln, err := s.listen(a.netw, a.addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", a.addr, err)
		}
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, err = c.Write([]byte("x"))
				c.Close()
			}
			accepted <- err
		}()
		c, err := s.dial(ctx, a.netw, ln.Addr().String())
		if err == nil {
			dl, _ := ctx.Deadline()
			c.SetDeadline(dl)
			_, err = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
		ln.Close()
		aerr := <-accepted
		if err != nil {
			return fmt.Errorf("connect %s: %w", ln.Addr(), err)
		}
		if aerr != nil {
			return fmt.Errorf("accept on %s: %w", ln.Addr(), aerr)
		}
	}
	return nil
}

// ---- probing as another uid ----

// The re-executed test binary finds its probe here.
const probeEnv = "BYPASS_HOOK_TESTNET_PROBE"

// The child prints its result on a line starting with this, so stray output
// of package init code does not confuse the parent.
const resultMarker = "BYPASS-HOOK-TESTNET-RESULT "

type probeRequest struct {
	Probe Probe
	UID   int
}

type probeReply struct {
	UID       int
	Body      string
	ElapsedNS int64
	Err       string
	Errno     int  // syscall errno found in the error chain, 0 if none
	Timeout   bool // the error was a timeout
}

// MaybeRunProbe must be the first call in TestMain of every package that uses
// RunProbeAs:
//
//	func TestMain(m *testing.M) {
//		testnet.MaybeRunProbe()
//		os.Exit(testnet.GuardHost(m))
//	}
//
// In a normal run it returns at once. In the child that RunProbeAs starts it
// drops to the requested uid, runs the probe, prints the result and exits.
func MaybeRunProbe() {
	v := os.Getenv(probeEnv)
	if v == "" {
		return
	}
	var req probeRequest
	rep := probeReply{UID: -1}
	err := json.Unmarshal([]byte(v), &req)
	if err == nil {
		// gid = uid, no supplementary groups: the uid is what owner rules match.
		// The dir of a test binary is 0700, so the privileges are dropped here,
		// after exec, not by nsenter --setuid before it.
		if err = syscall.Setgroups(nil); err == nil {
			if err = syscall.Setgid(req.UID); err == nil {
				err = syscall.Setuid(req.UID)
			}
		}
		if err != nil {
			err = fmt.Errorf("testnet: probe child dropping to uid %d: %w", req.UID, err)
		}
	}
	if err == nil {
		rep.UID = os.Geteuid()
		r := runProbe(ownSockets{fmt.Sprintf("child pid %d uid %d", os.Getpid(), rep.UID)}, req.Probe)
		rep.Body, rep.ElapsedNS, err = r.Body, int64(r.Elapsed), r.Err
	}
	if err != nil {
		rep.Err = err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			rep.Errno = int(errno)
		}
		rep.Timeout = IsTimeout(err)
	}
	b, _ := json.Marshal(rep)
	fmt.Printf("\n%s%s\n", resultMarker, b)
	os.Exit(0)
}

// RunProbeAs runs p inside ns in a socket owned by uid (and gid uid): it
// re-executes the test binary under nsenter, whose TestMain must call
// MaybeRunProbe. The error keeps the child's errno and timeout.
func RunProbeAs(ns *Netns, uid int, p Probe) Result {
	if ns == nil {
		return Result{Err: errors.New("testnet: probe with a nil namespace")}
	}
	fail := func(format string, a ...any) Result {
		return Result{Err: fmt.Errorf("testnet: %s probe %s as uid %d in %s: %s", p.Kind, target(p), uid, ns.Name, fmt.Sprintf(format, a...))}
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("finding the test binary: %v", err)
	}
	req, _ := json.Marshal(probeRequest{Probe: p, UID: uid})
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	// -test.run=^$: a TestMain without MaybeRunProbe runs no test in the child.
	cmd := ns.Command(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), probeEnv+"="+string(req))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	var rep *probeReply
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, resultMarker); ok {
			rep = new(probeReply)
			if jerr := json.Unmarshal([]byte(rest), rep); jerr != nil {
				return fail("bad reply %q: %v", rest, jerr)
			}
		}
	}
	if rep == nil {
		return fail("no result from the child (%v; does TestMain call testnet.MaybeRunProbe first?); output: %s %s",
			errOrOK(err), strings.TrimSpace(string(out)), strings.TrimSpace(stderr.String()))
	}
	r := Result{Body: rep.Body, Elapsed: time.Duration(rep.ElapsedNS)}
	switch {
	case rep.Err == "" && rep.UID != uid:
		r.Err = fmt.Errorf("testnet: probe child ran as uid %d, not %d", rep.UID, uid)
	case rep.Errno != 0:
		r.Err = childError{rep.Err, syscall.Errno(rep.Errno)}
	case rep.Timeout:
		r.Err = childError{rep.Err, os.ErrDeadlineExceeded}
	case rep.Err != "":
		r.Err = errors.New(rep.Err)
	}
	return r
}

// childError is the child's message with its errno or timeout put back, for
// errors.Is and IsTimeout.
type childError struct {
	msg string
	err error
}

func (e childError) Error() string { return e.msg }
func (e childError) Unwrap() error { return e.err }

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "exit 0"
}
