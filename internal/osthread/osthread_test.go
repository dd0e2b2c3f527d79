// SPDX-License-Identifier: Apache-2.0

package osthread_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// setName names the calling thread: a change of a thread's own that needs
// no privilege, as joining a namespace is one.
func setName(t *testing.T, name string) {
	p, _ := unix.BytePtrFromString(name)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0); err != nil {
		t.Error(err)
	}
}

// threadsNamed counts this process's threads named name.
func threadsNamed(name string) int {
	comms, _ := filepath.Glob("/proc/self/task/*/comm")
	n := 0
	for _, c := range comms {
		if b, _ := os.ReadFile(c); strings.TrimSpace(string(b)) == name {
			n++
		}
	}
	return n
}

// fn never runs on the first thread, the one that names the process in
// /proc/self, however often it is asked: Go would park that thread for
// ever, changed, instead of ending it.
func TestRunNeverUsesTheFirstThread(t *testing.T) {
	for i := 0; i < 2000; i++ {
		var tid int
		osthread.Run(func() bool { tid = unix.Gettid(); return i%2 == 0 })
		if tid == unix.Getpid() {
			t.Fatalf("call %d ran on the process's first thread", i)
		}
	}
}

// A thread that fn did not put back ends with it; one it did goes back to
// the scheduler and lives on.
func TestRunEndsAThreadNotPutBack(t *testing.T) {
	first, _ := os.ReadFile("/proc/self/comm")
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("bh-gone-%d", i)
		osthread.Run(func() bool { setName(t, name); return false })
		for deadline := time.Now().Add(5 * time.Second); threadsNamed(name) > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the thread named %s lives 5 s after Run", name)
			}
		}
	}
	if now, _ := os.ReadFile("/proc/self/comm"); string(now) != string(first) {
		t.Errorf("the first thread is named %q, was %q", now, first)
	}
	osthread.Run(func() bool { setName(t, "bh-kept"); return true })
	time.Sleep(50 * time.Millisecond)
	if threadsNamed("bh-kept") != 1 {
		t.Error("a thread put back ended")
	}
}

// fn that ends its goroutine (runtime.Goexit, as t.Fatal does) still lets
// Run return, and its thread ends.
func TestRunReturnsWhenFnExitsItsGoroutine(t *testing.T) {
	returned := make(chan struct{})
	go func() {
		osthread.Run(func() bool { setName(t, "bh-goexit"); runtime.Goexit(); return true })
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after fn ended its goroutine")
	}
	for deadline := time.Now().Add(5 * time.Second); threadsNamed("bh-goexit") > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the thread of a fn that ended its goroutine lives 5 s after Run")
		}
	}
}
