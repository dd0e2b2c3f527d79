// SPDX-License-Identifier: Apache-2.0

package trust

import (
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// hammer connects straight to each of addrs from inside ns, as fast as it
// can, until stop is closed, and counts the connections that got through
// and those that ended otherwise than refused.
func hammer(t *testing.T, ns *testnet.Netns, addrs []string, stop <-chan struct{}) (tries, through, odd *atomic.Int64, errs *sync.Map, done *sync.WaitGroup) {
	t.Helper()
	tries, through, odd, errs, done = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64), new(sync.Map), new(sync.WaitGroup)
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		fam := unix.AF_INET6
		var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		if ap.Addr().Is4() {
			fam = unix.AF_INET
			sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		}
		done.Add(1)
		go func() {
			defer done.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tries.Add(1)
				fd, err := netns.Socket(ns.Path, fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					odd.Add(1)
					errs.Store("socket: "+err.Error(), true)
					continue
				}
				// A refusal is a reset at once; anything that waits (a
				// packet dropped on the way) is cut short and counted odd.
				tv := unix.Timeval{Sec: 1}
				unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
				err = unix.Connect(fd, sa)
				unix.Close(fd)
				if err == unix.EINTR {
					continue // the Go runtime's preemption signal, not the fence
				}
				switch err {
				case nil:
					through.Add(1)
				case unix.ECONNREFUSED:
				default:
					odd.Add(1)
					errs.Store(a+": "+err.Error(), true)
				}
			}
		}()
	}
	return tries, through, odd, errs, done
}

// A fence replaced because the config changed (`apply`, and a container
// joining a namespace fenced under the older config) is replaced
// atomically: a workload that connects straight out without pause while
// the replacements run never gets through, in either backend or family.
func TestReplaceLeavesNoWindow(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			client := lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			base, err := os.ReadFile(e.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			e.create(startIn(t, client.Netns))

			stop := make(chan struct{})
			tries, through, odd, errs, done := hammer(t, client.Netns, []string{lab.TCPV4, lab.TCPV6}, stop)
			// Two configs whose rules differ (a DNS resolver or none, which
			// is not the server); each apply replaces every rule.
			const rounds = 30
			for i := range rounds {
				extra := ""
				if i%2 == 0 {
					extra = "dns: [203.0.113.53, \"2001:db8:ffff::53\"]\n"
				}
				if err := os.WriteFile(e.cfgPath, append(append([]byte{}, base...), extra...), 0o600); err != nil {
					t.Fatal(err)
				}
				if code, out, stderr := e.run("", "apply"); code != 0 || !strings.Contains(out, "replaced") {
					t.Fatalf("apply %d: exit %d: %s %s", i, code, out, stderr)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// A joiner under the older config replaces it too.
			e.create(startIn(t, client.Netns))
			close(stop)
			done.Wait()
			t.Logf("of %d straight connections %d got through, %d ended otherwise than refused, over %d replacements", tries.Load(), through.Load(), odd.Load(), rounds+1)
			errs.Range(func(k, _ any) bool { t.Logf("ended otherwise: %s", k); return true })
			if through.Load() > 0 {
				t.Errorf("%d straight connections got through while the fence was replaced", through.Load())
			}
			if odd.Load() > 0 {
				t.Errorf("%d straight connections ended otherwise than refused while the fence was replaced", odd.Load())
			}
		})
	}
}
