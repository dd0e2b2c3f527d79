// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"os"
	"sync"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// The process's first thread names the whole process in /proc/self: while
// an NFLOG socket is made in a fence's namespace, /proc/self/ns/net (the
// host guard's "own namespace") must still name the monitor's. The socket
// was made by mdlayher/socket on a goroutine of its own, which Go may put
// on the first thread: 2,342 reads of 2,000 sockets named the fence's.
func TestOpenNflogLeavesTheFirstThreadAlone(t *testing.T) {
	ns := testnet.NewNetns(t)
	h, closeNs, err := netns.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeNs()
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	seen := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(seen)
				return
			default:
			}
			if l, _ := os.Readlink("/proc/self/ns/net"); l != own {
				seen <- l
				close(seen)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 500 {
				c, err := openNflog(h, uint16(7300+g))
				if err != nil {
					t.Error(err)
					return
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	close(stop)
	if l, ok := <-seen; ok {
		t.Errorf("/proc/self/ns/net named %s, not the monitor's %s, while NFLOG sockets were made", l, own)
	}
}
