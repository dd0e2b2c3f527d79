// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// HoldInThread moves one thread of the test process, never its first,
// into the network namespace at path and keeps it there until release (or
// cleanup): then the thread ends. Such a namespace is reached by no
// /proc/PID/ns/net, which shows each process's first thread only: the case
// of a container's pid 1 that left its namespace with another of its
// threads still in it.
func HoldInThread(t testing.TB, path string) (release func()) {
	t.Helper()
	RequireRoot(t)
	ready, done := make(chan error), make(chan struct{})
	go osthread.Run(func() bool {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		ready <- err
		<-done
		return false // the thread ends in the namespace
	})
	if err := <-ready; err != nil {
		close(done)
		t.Fatalf("testnet: moving a thread into %s: %v", path, err)
	}
	var closed bool
	release = func() {
		if !closed {
			closed = true
			close(done)
		}
	}
	t.Cleanup(release)
	return release
}
