// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// ExpectFenced checks from ns, a client of lab, what a fence promises: GETs
// and CONNECTs through either proxy reach the lab's server over both
// families, and a direct connection over either family is refused
// (ECONNREFUSED, which tells a refusal from a drop; the time is logged, not
// asserted).
func ExpectFenced(t testing.TB, ns *Netns, lab *Lab) {
	t.Helper()
	for _, proxy := range []string{lab.ProxyV4, lab.ProxyV6} {
		for _, url := range []string{lab.URLV4, lab.URLV6} {
			if body, _, err := HTTPViaProxy(ns, proxy, url, 10*time.Second); err != nil || body != LabBody {
				t.Errorf("GET %s through the proxy %s: %q, %v", url, proxy, body, err)
			}
			if body, _, err := HTTPConnect(ns, proxy, url, 10*time.Second); err != nil || body != LabBody {
				t.Errorf("CONNECT to %s through the proxy %s: %q, %v", url, proxy, body, err)
			}
		}
	}
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		elapsed, err := DialTCP(ns, addr, 5*time.Second)
		switch {
		case err == nil:
			t.Errorf("direct connect to %s got through; want ECONNREFUSED", addr)
		case !errors.Is(err, syscall.ECONNREFUSED):
			t.Errorf("direct connect to %s: %v after %v; want ECONNREFUSED", addr, err, elapsed)
		default:
			t.Logf("direct connect to %s: refused in %v", addr, elapsed)
		}
	}
}

// ExpectOpen checks from ns that direct connections to lab get through: ns
// is not fenced.
func ExpectOpen(t testing.TB, ns *Netns, lab *Lab) {
	t.Helper()
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		if _, err := DialTCP(ns, addr, 5*time.Second); err != nil {
			t.Errorf("direct connect to %s: %v; want it to get through (not fenced)", addr, err)
		}
	}
}
