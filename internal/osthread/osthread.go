// SPDX-License-Identifier: Apache-2.0

// Package osthread runs code that changes its OS thread (joins a namespace)
// on a locked thread that is never the process's first, and throws the
// thread away unless the code put it back as it was.
//
// Go ends a thread whose goroutine exits while locked to it, except the
// process's first thread, which it parks for ever, still changed. That one
// names the process in /proc/self: left in a container's network namespace
// or the host's cgroup namespace, it would make /proc/self/ns/* lie about
// where the whole process is, and every check built on them (the host guard,
// prune's cgroup-namespace refusal) with it.
package osthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Run runs fn on a locked OS thread other than the process's first and
// waits for it. The thread goes back to the Go scheduler if fn returns true
// (it left the thread as it found it), and ends with fn otherwise.
func Run(fn func() (restored bool)) {
	done := make(chan struct{})
	go run(fn, done)
	<-done
}

func run(fn func() bool, done chan struct{}) {
	// Closed however fn ends, runtime.Goexit (a test's t.Fatal) included:
	// the caller never waits for ever.
	defer close(done)
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// Hold the first thread until fn is done: no other goroutine can be
		// put on it meanwhile, so the one started here gets another thread.
		inner := make(chan struct{})
		go run(fn, inner)
		<-inner
		runtime.UnlockOSThread()
		return
	}
	if fn() {
		runtime.UnlockOSThread()
	}
}
