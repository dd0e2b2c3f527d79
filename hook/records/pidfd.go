// SPDX-License-Identifier: Apache-2.0

package records

import (
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/fdlimit"
)

// pidfds keeps a pidfd of each owner process seen running, for a store
// that prunes again and again (the monitor's, Store.KeepPidfds): whether
// the process has ended is then one poll, where /proc/PID/stat would be
// opened, read and parsed for each owner at every resync. A pidfd names
// its process and no other, so a reused pid cannot pass for it.
type pidfds struct {
	mu   sync.Mutex
	fds  map[procID]int
	seen map[procID]bool // looked at during the current ReapAbandoned
}

// procID is an owner's process: its pid and start time.
type procID struct {
	pid   int
	start uint64
}

// stale is Owner.Stale, through the owner's pidfd where the store keeps
// them: while the process has not ended it is the owner's (the pidfd was
// opened when its pid showed the owner's start time), and only its
// namespace is read from /proc. Anything else (an ended process, no start
// time recorded, no pidfd to be had) is judged by Owner.Stale.
func (s *Store) stale(o Owner, ns netns.ID) string {
	if !s.KeepPidfds || o.Pid <= 0 || o.Start == 0 {
		return o.Stale(ns)
	}
	id := procID{o.Pid, o.Start}
	fd, ok := s.pidfd(id)
	if !ok {
		return o.Stale(ns)
	}
	// The namespace first: a process that has not ended after it was
	// read is the one whose namespace was read.
	got, _ := netns.Peek(netns.PidPath(o.Pid))
	if ended(fd) {
		s.pidfds.mu.Lock()
		delete(s.pidfds.fds, id)
		s.pidfds.mu.Unlock()
		unix.Close(fd)
		return o.Stale(ns)
	}
	return StaleReason(o, Process{Exists: true, Start: o.Start, Netns: got}, ns)
}

// pidfd returns the pidfd of process id, opened now if need be: none when
// the process does not show id's start time (ended, or its pid reused),
// pidfd_open is missing, or the store holds its share of descriptors.
func (s *Store) pidfd(id procID) (int, bool) {
	p := &s.pidfds
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[procID]bool{}
	}
	p.seen[id] = true
	if fd, ok := p.fds[id]; ok {
		return fd, true
	}
	if len(p.fds) >= fdlimit.Quarter() {
		return -1, false
	}
	fd, err := unix.PidfdOpen(id.pid, 0)
	if err != nil {
		return -1, false
	}
	// Read after the pidfd is open: a start time that matches then is
	// that of the process the pidfd names.
	if start, err := readStart(id.pid); err != nil || start != id.start {
		unix.Close(fd)
		return -1, false
	}
	if p.fds == nil {
		p.fds = map[procID]int{}
	}
	p.fds[id] = fd
	return fd, true
}

// ended says whether the process of pidfd fd has ended (a zombie has): a
// pidfd polls readable then.
func ended(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	return err != nil || (n > 0 && pfd[0].Revents != 0)
}

// closeUnseen closes the pidfds of processes not looked at since the last
// call: owners of records gone, or no longer named.
func (s *Store) closeUnseen() {
	p := &s.pidfds
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, fd := range p.fds {
		if !p.seen[id] {
			unix.Close(fd)
			delete(p.fds, id)
		}
	}
	clear(p.seen)
}
