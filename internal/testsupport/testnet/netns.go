// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// Netns is a named network namespace made by the test (in /run/netns, so `ip
// netns` and runc's linux.namespaces path can reach it).
type Netns struct {
	Name string // e.g. "bh-4242-1a2b3c": the test process's pid, then random
	Path string // /run/netns/<Name>
}

// NewNetns makes an empty network namespace (loopback down) and deletes it at
// cleanup. Processes still inside keep it alive until they exit.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip", "nsenter")
	sweepNetns()
	name := RandName(fmt.Sprintf("bh-%d-", os.Getpid()))
	if _, err := run("", "ip", "netns", "add", name); err != nil {
		t.Fatalf("testnet: creating netns: %v", err)
	}
	n := &Netns{Name: name, Path: "/run/netns/" + name}
	t.Cleanup(func() {
		if _, err := run("", "ip", "netns", "del", name); err != nil {
			t.Errorf("testnet: removing netns: %v", err)
		}
	})
	return n
}

// sweepNetns deletes the namespaces that test processes now gone made: a
// test binary that `go test -timeout` stops runs no cleanup. The pid in a
// name tells whose it is; a running process's, or a name without one,
// is left alone.
func sweepNetns() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		pid, _, ok := strings.Cut(strings.TrimPrefix(e.Name(), "bh-"), "-")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || !strings.HasPrefix(e.Name(), "bh-") {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(n)); err == nil {
			continue
		}
		_, _ = run("", "ip", "netns", "del", e.Name())
	}
}

// Do runs fn on an OS thread that is in the namespace, and returns its error.
// Sockets fn creates belong to the namespace and may be used afterwards from
// any goroutine; goroutines fn starts do NOT run in the namespace.
func (n *Netns) Do(fn func() error) error {
	if n == nil {
		return fmt.Errorf("testnet: Do on a nil namespace")
	}
	var err error
	// Another thread than the caller's, which never changes namespace; one
	// that cannot come back is thrown away.
	osthread.Run(func() bool {
		orig, gerr := netns.Get()
		if gerr != nil {
			err = fmt.Errorf("testnet: reading current netns: %w", gerr)
			return true
		}
		defer orig.Close()
		target, gerr := netns.GetFromPath(n.Path)
		if gerr != nil {
			err = fmt.Errorf("testnet: opening netns %s: %w", n.Path, gerr)
			return true
		}
		defer target.Close()
		if serr := netns.Set(target); serr != nil {
			err = fmt.Errorf("testnet: entering netns %s: %w", n.Path, serr)
			return false
		}
		err = fn()
		if berr := netns.Set(orig); berr != nil {
			err = fmt.Errorf("testnet: returning from netns %s: %w", n.Path, berr)
			return false
		}
		return true
	})
	return err
}

// Command returns a command that runs args inside the namespace through
// nsenter (not `ip netns exec`, which also remounts /sys).
func (n *Netns) Command(ctx context.Context, args ...string) *exec.Cmd {
	nsenter, err := Tool("nsenter")
	if err != nil {
		nsenter = "nsenter" // Run will report it missing
	}
	return exec.CommandContext(ctx, nsenter, append([]string{"--net=" + n.Path, "--"}, args...)...)
}

// Exec runs args inside the namespace and returns the combined output; the
// test fails if the command does.
func (n *Netns) Exec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := run("", "nsenter", append([]string{"--net=" + n.Path, "--"}, args...)...)
	if err != nil {
		t.Fatalf("testnet: in netns %s: %v", n.Name, err)
	}
	return out
}

// Answer listens on the TCP address addr inside the namespace and writes
// reply to every connection before closing it, until the test ends.
func (n *Netns) Answer(t testing.TB, addr, reply string) {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("testnet: listening on %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(reply))
			c.Close()
		}
	}()
}
