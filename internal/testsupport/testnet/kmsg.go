// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	nfLogAllNetns = "/proc/sys/net/netfilter/nf_log_all_netns"
	// Tests of several packages run at once; the first to turn the sysctl on
	// saves the machine's value here, the last to finish puts it back.
	nfLogLock = "/run/bypass-hook-test-nf_log_all_netns.lock"
	nfLogOrig = "/run/bypass-hook-test-nf_log_all_netns.orig"
)

// KernelNetnsLog turns on net.netfilter.nf_log_all_netns, without which the
// kernel drops LOG lines of every namespace but the host's, for the rest of
// the test. Concurrent users share it through a shared flock; the last one
// out restores the value the machine had.
func KernelNetnsLog(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	fd, err := syscall.Open(nfLogLock, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	// Exclusive while we read and set, so two first users don't both save.
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		t.Fatalf("testnet: %v", err)
	}
	if _, err := os.Stat(nfLogOrig); errors.Is(err, os.ErrNotExist) {
		orig, err := os.ReadFile(nfLogAllNetns)
		if err != nil {
			t.Skipf("skipping: this kernel has no %s: %v", nfLogAllNetns, err)
		}
		if err := os.WriteFile(nfLogOrig, orig, 0o600); err != nil {
			t.Fatalf("testnet: %v", err)
		}
	}
	if err := os.WriteFile(nfLogAllNetns, []byte("1\n"), 0o644); err != nil {
		t.Fatalf("testnet: setting %s: %v", nfLogAllNetns, err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_SH); err != nil { // downgrade: others may join
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(func() {
		defer syscall.Close(fd)
		// Exclusive only if nobody else holds it shared: then we are last.
		if syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			return
		}
		orig, err := os.ReadFile(nfLogOrig)
		if err != nil {
			t.Errorf("testnet: restoring %s: %v", nfLogAllNetns, err)
			return
		}
		if err := os.WriteFile(nfLogAllNetns, orig, 0o644); err != nil {
			t.Errorf("testnet: restoring %s: %v", nfLogAllNetns, err)
		}
		os.Remove(nfLogOrig)
	})
}

// Kmsg reads the kernel log from now on.
type Kmsg struct {
	f     *os.File
	lines chan string
}

// OpenKmsg opens /dev/kmsg at its end; it is closed at cleanup.
func OpenKmsg(t testing.TB) *Kmsg {
	t.Helper()
	RequireRoot(t)
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		t.Skipf("skipping: cannot read the kernel log: %v", err)
	}
	if _, err := f.Seek(0, 2); err != nil { // SEEK_END: only new records
		f.Close()
		t.Fatalf("testnet: seeking /dev/kmsg: %v", err)
	}
	k := &Kmsg{f: f, lines: make(chan string, 4096)}
	go func() {
		defer close(k.lines)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			// "prio,seq,usec,flags;message"
			if _, msg, ok := strings.Cut(sc.Text(), ";"); ok {
				k.lines <- msg
			}
		}
	}()
	t.Cleanup(func() { f.Close() })
	return k
}

// Wait returns the first new kernel log line that contains every one of
// subs, or an error after timeout.
func (k *Kmsg) Wait(timeout time.Duration, subs ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case line, ok := <-k.lines:
			if !ok {
				return "", errors.New("testnet: the kernel log was closed")
			}
			match := true
			for _, s := range subs {
				match = match && strings.Contains(line, s)
			}
			if match {
				return line, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("testnet: no kernel log line with %q within %v", subs, timeout)
		}
	}
}
