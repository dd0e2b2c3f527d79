// SPDX-License-Identifier: Apache-2.0

// Command sockhold plays a workload's pid 1 for TestTrustSocketHeldAfterLeaving: it makes a
// TCP socket in the container's (fenced) network namespace, then, keeping it as fd 3, moves
// itself into a user and network namespace of its own (busybox unshare -Urn): no process is
// left in the fenced namespace, only the socket. Each time /tmp/go appears it connects that
// socket straight to the address it was given and writes the outcome to /tmp/result.
//
// With make-inflight it parks the socket, once out of the fenced namespace, in flight over a
// unix socket pair it holds (SCM_RIGHTS) and closes fd 3, so that no file table shows it, and
// takes it back from the pair to connect.
package main

import (
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && (os.Args[1] == "make" || os.Args[1] == "make-inflight") {
		next := "connect"
		if os.Args[1] == "make-inflight" {
			next = "inflight"
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err == nil && fd != 3 {
			err = syscall.Dup2(fd, 3)
			syscall.Close(fd) // fd 3 alone holds it
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sockhold:", err)
			os.Exit(1)
		}
		err = syscall.Exec("/bin/busybox", []string{"unshare", "-Urn", "/sockhold", next, os.Args[2]}, os.Environ())
		fmt.Fprintln(os.Stderr, "sockhold: exec unshare:", err)
		os.Exit(1)
	}
	if len(os.Args) != 3 || (os.Args[1] != "connect" && os.Args[1] != "inflight") {
		fmt.Fprintln(os.Stderr, "usage: sockhold make|make-inflight|connect|inflight ADDR:PORT")
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(os.Args[2])
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "sockhold: want an IPv4 ADDR:PORT:", os.Args[2])
		os.Exit(2)
	}
	sock := 3
	var pair [2]int
	if os.Args[1] == "inflight" {
		var err error
		pair, err = syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err == nil {
			err = syscall.Sendmsg(pair[0], []byte{0}, syscall.UnixRights(3), nil, 0)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sockhold: parking the socket:", err)
			os.Exit(1)
		}
		syscall.Close(3)
		sock = -1
	}
	os.WriteFile("/tmp/ready", nil, 0o666)
	for {
		if _, err := os.Stat("/tmp/go"); err == nil {
			if sock < 0 {
				sock, err = takeBack(pair[1])
				if err != nil {
					os.WriteFile("/tmp/result", []byte(fmt.Sprintf("taking the socket back: %v\n", err)), 0o666)
					os.Exit(1)
				}
			}
			err := syscall.Connect(sock, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
			os.WriteFile("/tmp/result", []byte(fmt.Sprintf("connect: %v\n", err)), 0o666)
			os.Remove("/tmp/go")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// takeBack receives the socket parked in flight on the unix socket fd.
func takeBack(fd int) (int, error) {
	oob := make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := syscall.Recvmsg(fd, make([]byte, 1), oob, 0)
	if err != nil {
		return -1, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("control messages %v: %v", msgs, err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("rights %v: %v", fds, err)
	}
	return fds[0], nil
}
