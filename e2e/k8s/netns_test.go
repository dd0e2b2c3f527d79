// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// InNetNS runs fn on an OS thread that has entered the network namespace at nsPath. Sockets
// that fn creates belong to that namespace for their whole life, wherever they are used later.
// The thread is never handed back to the Go scheduler: it ends with fn's goroutine.
func InNetNS(nsPath string, fn func() error) error {
	var err error
	// Never put back: the thread ends with fn, so no other goroutine ever runs in the foreign
	// namespace.
	osthread.Run(func() bool {
		f, oerr := os.Open(nsPath)
		if oerr != nil {
			err = oerr
			return false
		}
		defer f.Close()
		if serr := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = fmt.Errorf("setns %s: %w", nsPath, serr)
			return false
		}
		err = fn()
		return false
	})
	return err
}

// DialInNetNS opens a connection from inside the network namespace at nsPath.
func DialInNetNS(nsPath, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := InNetNS(nsPath, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// ListenInNetNS opens a listener inside the network namespace at nsPath.
func ListenInNetNS(nsPath, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNetNS(nsPath, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// HTTPServer answers every request with 200 and HTTPBody, on listeners opened in a namespace.
type HTTPServer struct {
	srv   *http.Server
	mu    sync.Mutex
	peers []string
}

// HTTPBody is what the node HTTP server answers.
const HTTPBody = "bypass-hook e2e http ok\n"

// StartHTTPServer serves on addrs (IP:port), listening in the network namespace at nsPath.
func StartHTTPServer(nsPath string, addrs ...string) (*HTTPServer, error) {
	h := &HTTPServer{}
	h.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.mu.Lock()
			h.peers = append(h.peers, r.RemoteAddr)
			h.mu.Unlock()
			_, _ = io.WriteString(w, HTTPBody)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	for _, a := range addrs {
		l, err := ListenInNetNS(nsPath, "tcp", a)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("listen %s: %w", a, err)
		}
		go func() { _ = h.srv.Serve(l) }()
	}
	return h, nil
}

// Peers are the remote addresses of the requests served so far (a request through the
// proxy comes from the gateway address, a direct one from the pod's).
func (h *HTTPServer) Peers() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.peers...)
}

// Close stops the server and its listeners.
func (h *HTTPServer) Close() { _ = h.srv.Close() }

// Outcome is how a connection attempt ended.
type Outcome string

// Outcomes of a probe.
const (
	Success     Outcome = "success"     // connected (and, for HTTP, got 200 with the body)
	Refused     Outcome = "refused"     // ECONNREFUSED: a TCP reset or an ICMP port unreachable
	Timeout     Outcome = "timeout"     // nothing came back in time
	Unreachable Outcome = "unreachable" // EHOSTUNREACH, ENETUNREACH, EACCES, EPERM (ICMP prohibited, no route)
	ProxyError  Outcome = "proxy-error" // the proxy answered CONNECT with a non-200 status
	Failed      Outcome = "error"       // anything else (see Err)
)

// ProbeResult is what a probe saw.
type ProbeResult struct {
	Outcome Outcome
	Elapsed time.Duration
	Err     error
	Status  int    // HTTP status, where there was one
	Body    string // HTTP body, where there was one
}

// ElapsedMS is Elapsed in milliseconds.
func (r ProbeResult) ElapsedMS() int64 { return r.Elapsed.Milliseconds() }

func (r ProbeResult) String() string {
	s := fmt.Sprintf("%s after %d ms", r.Outcome, r.ElapsedMS())
	if r.Status != 0 {
		s += fmt.Sprintf(", status %d", r.Status)
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// Classify maps a connection error to an Outcome.
func Classify(err error) Outcome {
	var ne net.Error
	switch {
	case err == nil:
		return Success
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Unreachable
	case errors.As(err, &ne) && ne.Timeout():
		return Timeout
	}
	return Failed
}

// ProbeTCP connects to addr (IP:port) from the namespace at nsPath, as root in the test process.
func ProbeTCP(nsPath, addr string, timeout time.Duration) ProbeResult {
	start := time.Now()
	c, err := DialInNetNS(nsPath, "tcp", addr, timeout)
	r := ProbeResult{Outcome: Classify(err), Elapsed: time.Since(start), Err: err}
	if c != nil {
		c.Close()
	}
	return r
}

// ProbeUDP sends a datagram to addr from the namespace at nsPath and waits for a reply: an
// ICMP port unreachable shows as Refused, silence as Timeout.
func ProbeUDP(nsPath, addr string, timeout time.Duration) ProbeResult {
	start := time.Now()
	done := func(err error) ProbeResult {
		return ProbeResult{Outcome: Classify(err), Elapsed: time.Since(start), Err: err}
	}
	c, err := DialInNetNS(nsPath, "udp", addr, timeout)
	if err != nil {
		return done(err)
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := c.Write([]byte("bhprobe\n")); err != nil {
		return done(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	r := done(err)
	if err == nil {
		r.Body = string(buf[:n])
	}
	return r
}

// ProbeHTTP GETs http://target/ directly from the namespace at nsPath. target is IP:port
// ([v6]:port). Success needs status 200.
func ProbeHTTP(nsPath, target string, timeout time.Duration) ProbeResult {
	return probeHTTP(nsPath, target, "", timeout)
}

// ProbeProxy GETs http://target/ through the HTTP CONNECT proxy at proxy (IP:port), from the
// namespace at nsPath: the way a workload that honours HTTPS_PROXY gets out.
func ProbeProxy(nsPath, proxy, target string, timeout time.Duration) ProbeResult {
	return probeHTTP(nsPath, target, proxy, timeout)
}

func probeHTTP(nsPath, target, proxy string, timeout time.Duration) ProbeResult {
	start := time.Now()
	res := func(o Outcome, status int, body string, err error) ProbeResult {
		return ProbeResult{Outcome: o, Elapsed: time.Since(start), Err: err, Status: status, Body: body}
	}
	dial := target
	if proxy != "" {
		dial = proxy
	}
	c, err := DialInNetNS(nsPath, "tcp", dial, timeout)
	if err != nil {
		return res(Classify(err), 0, "", err)
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(timeout))
	br := bufio.NewReader(c)
	if proxy != "" {
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return res(Classify(err), 0, "", fmt.Errorf("proxy: %w", err))
		}
		if resp.StatusCode != http.StatusOK {
			return res(ProxyError, resp.StatusCode, "", fmt.Errorf("proxy: %s", resp.Status))
		}
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return res(Classify(err), 0, "", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if err != nil {
		return res(Classify(err), resp.StatusCode, string(body), err)
	}
	if resp.StatusCode != http.StatusOK {
		return res(Failed, resp.StatusCode, string(body), fmt.Errorf("http: %s", resp.Status))
	}
	return res(Success, resp.StatusCode, string(body), nil)
}
