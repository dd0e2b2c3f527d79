// SPDX-License-Identifier: Apache-2.0

// Command sockhold plays a workload's pid 1 for TestTrustSocketHeldAfterLeaving: it makes a
// TCP socket in the container's (fenced) network namespace, then, keeping it as fd 3, moves
// itself into a user and network namespace of its own (busybox unshare -Urn): no process is
// left in the fenced namespace, only the socket. Each time /tmp/go appears it connects that
// socket straight to the address it was given and writes the outcome to /tmp/result.
package main

import (
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "make" {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err == nil && fd != 3 {
			err = syscall.Dup2(fd, 3)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sockhold:", err)
			os.Exit(1)
		}
		err = syscall.Exec("/bin/busybox", []string{"unshare", "-Urn", "/sockhold", "connect", os.Args[2]}, os.Environ())
		fmt.Fprintln(os.Stderr, "sockhold: exec unshare:", err)
		os.Exit(1)
	}
	if len(os.Args) != 3 || os.Args[1] != "connect" {
		fmt.Fprintln(os.Stderr, "usage: sockhold make|connect ADDR:PORT")
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(os.Args[2])
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "sockhold: want an IPv4 ADDR:PORT:", os.Args[2])
		os.Exit(2)
	}
	os.WriteFile("/tmp/ready", nil, 0o666)
	for {
		if _, err := os.Stat("/tmp/go"); err == nil {
			err := syscall.Connect(3, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
			os.WriteFile("/tmp/result", []byte(fmt.Sprintf("connect: %v\n", err)), 0o666)
			os.Remove("/tmp/go")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
