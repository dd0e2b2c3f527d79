// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// Nobody is the uid tests play a hostile workload as: not root, so it has
// no capabilities (RunProbeAs drops to it after exec).
const Nobody = 65534

// ExpectRefusedAs checks that uid, from inside ns, cannot connect straight
// to the lab's server over either family: ECONNREFUSED, as the fence
// answers. A connection that gets through, or any other error, fails t.
func ExpectRefusedAs(t testing.TB, ns *Netns, lab *Lab, uid int) {
	t.Helper()
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		r := RunProbeAs(ns, uid, Probe{Kind: ProbeTCP, Addr: addr, Timeout: 5 * time.Second})
		switch {
		case r.Err == nil:
			t.Errorf("uid %d connected straight to %s from %s: the fence let it through", uid, addr, ns.Name)
		case !errors.Is(r.Err, syscall.ECONNREFUSED):
			t.Errorf("uid %d connecting straight to %s from %s: %v; want ECONNREFUSED", uid, addr, ns.Name, r.Err)
		}
	}
}
