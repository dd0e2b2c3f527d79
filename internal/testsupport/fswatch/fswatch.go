// SPDX-License-Identifier: Apache-2.0

// Package fswatch counts, for tests, the files a piece of code opens in a
// directory, with inotify: how many records a hook stage reads.
package fswatch

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// Opens runs fn and returns how many times each file directly in dir was
// opened meanwhile, by name, by any process (the hook binaries fn runs
// too). Opens of dir itself are not counted, nor opens that failed.
func Opens(t testing.TB, dir string, fn func()) map[string]int {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// Closes too, though only opens are counted: inotify merges an event
	// into the one before it when the two are alike, and two opens of one
	// file in a row would count as one.
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN|unix.IN_CLOSE); err != nil {
		t.Fatal(err)
	}
	fn()
	opened := map[string]int{}
	buf := make([]byte, 1<<16)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || n <= 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then the name.
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+size], "\x00"))
			if mask&unix.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify queue overflowed: the count is not whole")
			}
			if name != "" && mask&unix.IN_OPEN != 0 {
				opened[name]++
			}
			off += unix.SizeofInotifyEvent + size
		}
	}
	return opened
}
