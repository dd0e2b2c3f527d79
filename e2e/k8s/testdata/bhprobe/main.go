// SPDX-License-Identifier: Apache-2.0

// Command bhprobe is a connection probe for the e2e workload image (busybox-static's own wget
// crashes on Debian 12). It runs inside a container, as the container's user, and prints one
// JSON line:
//
//	{"outcome":"success|refused|timeout|unreachable|proxy-error|error","elapsed_ms":3,
//	 "error":"...","status":200,"body":"..."}
//
// Usage:
//
//	bhprobe [-timeout 5s] tcp  HOST:PORT                  TCP connect only
//	bhprobe [-timeout 5s] udp  HOST:PORT                  send a datagram, wait for a reply or an ICMP error
//	bhprobe [-timeout 5s] http HOST:PORT [-proxy P:PORT]  GET / directly, or through an HTTP CONNECT proxy
//
// The exit code is 0 for success and 1 otherwise; 2 for usage errors.
//
// Built by scripts/build-k8s-deps.sh into the image localhost/bypass-hook-e2e/busybox as /bin/bhprobe.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

type result struct {
	Outcome   string `json:"outcome"`
	ElapsedMS int64  `json:"elapsed_ms"`
	Error     string `json:"error,omitempty"`
	Status    int    `json:"status,omitempty"`
	Body      string `json:"body,omitempty"`
}

func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}

func main() {
	timeout := flag.Duration("timeout", 5*time.Second, "overall timeout")
	proxy := flag.String("proxy", "", "HTTP CONNECT proxy HOST:PORT (http mode)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: bhprobe [-timeout D] [-proxy HOST:PORT] tcp|udp|http HOST:PORT")
		os.Exit(2)
	}
	mode, target := flag.Arg(0), flag.Arg(1)
	start := time.Now()
	deadline := start.Add(*timeout)
	var r result
	switch mode {
	case "tcp":
		c, err := net.DialTimeout("tcp", target, *timeout)
		if err == nil {
			c.Close()
		}
		r = result{Outcome: classify(err)}
		if err != nil {
			r.Error = err.Error()
		}
	case "udp":
		r = probeUDP(target, deadline)
	case "http":
		r = probeHTTP(target, *proxy, *timeout, deadline)
	default:
		fmt.Fprintln(os.Stderr, "bhprobe: unknown mode", mode)
		os.Exit(2)
	}
	r.ElapsedMS = time.Since(start).Milliseconds()
	_ = json.NewEncoder(os.Stdout).Encode(r)
	if r.Outcome != "success" {
		os.Exit(1)
	}
}

func probeUDP(target string, deadline time.Time) result {
	c, err := net.Dial("udp", target)
	if err != nil {
		return result{Outcome: classify(err), Error: err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte("bhprobe\n")); err != nil {
		return result{Outcome: classify(err), Error: err.Error()}
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return result{Outcome: classify(err), Error: err.Error()}
	}
	return result{Outcome: "success", Body: string(buf[:n])}
}

func probeHTTP(target, proxy string, timeout time.Duration, deadline time.Time) result {
	dial := target
	if proxy != "" {
		dial = proxy
	}
	c, err := net.DialTimeout("tcp", dial, timeout)
	if err != nil {
		return result{Outcome: classify(err), Error: err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	br := bufio.NewReader(c)
	if proxy != "" {
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return result{Outcome: classify(err), Error: "proxy: " + err.Error()}
		}
		if resp.StatusCode != http.StatusOK {
			return result{Outcome: "proxy-error", Status: resp.StatusCode, Error: "proxy: " + resp.Status}
		}
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return result{Outcome: classify(err), Error: err.Error()}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	r := result{Outcome: "success", Status: resp.StatusCode, Body: string(body)}
	if err != nil {
		r.Outcome, r.Error = classify(err), err.Error()
	} else if resp.StatusCode != http.StatusOK {
		r.Outcome, r.Error = "error", "http: "+resp.Status
	}
	return r
}
