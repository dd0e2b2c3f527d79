// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// BenchmarkAttribution measures, for `make bench` (run it with
// -benchtime 1x), what attribution costs:
//   - the CPU time (user and system, of this process, which the programs
//     run in) per refused TCP attempt out of a fenced namespace, with the
//     programs not loaded, loaded with the namespace not fenced (what every
//     other socket call on the host pays), and loaded and fenced; in rounds
//     that take the three in turn, so that each sees the same load; the
//     medians and their ratios to the first;
//   - the same for a UDP send on a connected socket over loopback, which
//     the AF_VSOCK program's tracepoint (every send of the host) adds to;
//   - the kernel memory of the maps with 1,000 fenced namespaces.
func BenchmarkAttribution(b *testing.B) {
	testnet.RequireRoot(b)
	const rounds, perRound = 9, 2000
	ns := refusingNetns(b)
	cookie, err := NetnsCookie(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	conds := []string{"off", "unfenced", "fenced"}
	cpu, sends := map[string][]float64{}, map[string][]float64{}
	for r := range rounds {
		for i := range conds {
			c := conds[(i+r)%len(conds)]
			var tr *Tracer
			if c != "off" {
				if tr, err = Load(""); err != nil {
					b.Fatal(err)
				}
				if c == "fenced" {
					if err := tr.Fence(cookie); err != nil {
						b.Fatal(err)
					}
				}
			}
			per, err := attemptCPU(ns, perRound)
			if err == nil {
				var send float64
				send, err = sendCPU(ns, 5*perRound)
				sends[c] = append(sends[c], send)
			}
			if tr != nil {
				tr.Close()
			}
			if err != nil {
				b.Fatal(err)
			}
			cpu[c] = append(cpu[c], per)
		}
	}
	base, sendBase := median(cpu["off"]), median(sends["off"])
	for _, c := range conds {
		m, sm := median(cpu[c]), median(sends[c])
		b.ReportMetric(m, "cpu-ns/attempt-"+c)
		b.ReportMetric(m/base, "ratio-"+c)
		b.ReportMetric(sm, "cpu-ns/send-"+c)
		b.ReportMetric(sm/sendBase, "send-ratio-"+c)
	}

	tr, err := Load("")
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	empty, err := tr.MapMemory()
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := tr.Fence(uint64(1<<40 + i)); err != nil {
			b.Fatal(err)
		}
	}
	full, err := tr.MapMemory()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(empty)/1024, "map-KiB-0-namespaces")
	b.ReportMetric(float64(full)/1024, "map-KiB-1000-namespaces")
}

// attemptCPU makes n refused TCP attempts from a thread in ns and returns
// the process's CPU time per attempt, in nanoseconds.
func attemptCPU(ns *testnet.Netns, n int) (float64, error) {
	var per float64
	err := ns.Do(func() error {
		var before, after unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &before); err != nil {
			return err
		}
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{198, 51, 100, 9}, Port: 443})
			unix.Close(fd)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("attempt: %v, want ECONNREFUSED", err)
			}
		}
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &after); err != nil {
			return err
		}
		used := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
		per = float64(used.Nanoseconds()) / float64(n)
		return nil
	})
	return per, err
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// sendCPU sends n datagrams on a connected UDP socket over loopback from a
// thread in ns and returns the CPU time per send, in nanoseconds.
func sendCPU(ns *testnet.Netns, n int) (float64, error) {
	var per float64
	err := ns.Do(func() error {
		rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(rx)
		if err := unix.Bind(rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		sa, err := unix.Getsockname(rx)
		if err != nil {
			return err
		}
		tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(tx)
		if err := unix.Connect(tx, sa); err != nil {
			return err
		}
		msg := make([]byte, 64)
		var before, after unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &before); err != nil {
			return err
		}
		for range n {
			// The receiver never reads: past its buffer, datagrams are
			// dropped, and the sends succeed all the same.
			if _, err := unix.Write(tx, msg); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &after); err != nil {
			return err
		}
		used := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
		per = float64(used.Nanoseconds()) / float64(n)
		return nil
	})
	return per, err
}
