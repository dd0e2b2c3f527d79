// SPDX-License-Identifier: Apache-2.0

package records

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/bypass-hook/bypass-hook/hook/netns"
)

// Process is what /proc shows of a pid at one moment.
type Process struct {
	Exists bool
	Start  uint64   // clock ticks after boot
	Netns  netns.ID // zero when it cannot be read
}

// ReadProcess looks at pid: its network namespace first, then its start
// time, so that a pid reused between the two reads shows another start.
func ReadProcess(pid int) Process {
	if pid <= 0 {
		return Process{}
	}
	ns, _ := netns.Peek(netns.PidPath(pid))
	start, err := readStart(pid)
	if err != nil {
		return Process{}
	}
	return Process{Exists: true, Start: start, Netns: ns}
}

// readStart reads pid's start time from /proc/PID/stat.
func readStart(pid int) (uint64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return startTime(stat)
}

// startTime reads field 22 of /proc/PID/stat, the start time in clock
// ticks after boot (proc(5)). The command name (field 2) is in parentheses
// and may itself hold spaces and parentheses, so the fields are counted
// from the last ')'. Parsed here rather than with a /proc library, whose
// package initialisation the hook would pay on every container start.
func startTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no command name in parentheses")
	}
	fields := bytes.Fields(stat[i+1:]) // fields 3 onwards
	const startField = 22
	if len(fields) < startField-2 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want at least %d", len(fields), startField-2)
	}
	return strconv.ParseUint(string(fields[startField-3]), 10, 64)
}

// StartOf returns the start time of pid, or 0 when it cannot be read: what
// create records, so that a reused pid is told from the container's.
func StartOf(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	start, _ := readStart(pid) // 0 on error
	return start
}

// StaleReason decides whether owner o, whose pid showed p, no longer runs in
// namespace ns, and says why; "" when it does. A runtime whose start fails
// (podman) may never call poststop, so an owner can outlive its process.
func StaleReason(o Owner, p Process, ns netns.ID) string {
	switch {
	case o.Pid <= 0:
		return "no process recorded"
	case !p.Exists:
		return fmt.Sprintf("process %d is gone", o.Pid)
	case o.Start != 0 && p.Start != o.Start:
		return fmt.Sprintf("pid %d is another process now (started at tick %d, the container's at %d)", o.Pid, p.Start, o.Start)
	case p.Netns != ns:
		return fmt.Sprintf("process %d is in another network namespace now", o.Pid)
	}
	return ""
}

// Stale says why owner o's process no longer runs in namespace ns, or ""
// when it does.
func (o Owner) Stale(ns netns.ID) string {
	return StaleReason(o, ReadProcess(o.Pid), ns)
}

// Prunable marks, in rec, the owners first seen stale at now (and clears
// the mark of any seen running again), and tells whether every owner is
// stale and when the fence falls due: a grace period after the last of
// them was first seen stale, which lets a poststop on its way arrive
// first. changed says rec must be saved. stale is Owner.Stale, or a stand
// in for tests.
func Prunable(rec *Record, now time.Time, grace time.Duration, stale func(Owner, netns.ID) string) (allStale bool, due time.Time, changed bool) {
	allStale = true
	for i := range rec.Owners {
		o := &rec.Owners[i]
		if stale(*o, rec.Netns) == "" {
			allStale = false
			if !o.StaleSince.IsZero() {
				o.StaleSince, changed = time.Time{}, true
			}
			continue
		}
		if o.StaleSince.IsZero() {
			o.StaleSince, changed = now, true
		}
		if o.StaleSince.After(due) {
			due = o.StaleSince
		}
	}
	if len(rec.Owners) == 0 {
		due = rec.Installed // a record nobody owns: left by an interrupted hook
	}
	return allStale, due.Add(grace), changed
}

// ReapAbandoned goes through the records and, under each one's lock, marks
// owners newly seen stale; where every owner has been stale for grace it
// asks inUse whether anything still reaches the record's namespace
// (netns.InUse, OwnerRuns: a workload controls its own pid 1, which may
// exit or move to a namespace of its own while a worker stays), keeps the
// fence if so, and otherwise calls remove, which takes the fence out and
// deletes the record. Records
// a running hook holds are passed over. It returns the keys removed, those
// kept with the reason, and the earliest time a fence still in its grace
// period falls due (zero when none is).
func (s *Store) ReapAbandoned(grace time.Duration, now time.Time, inUse func(*Record) string, remove func(key string, rec *Record) error) (removed []string, kept map[string]string, next time.Time, err error) {
	keys, err := s.Keys()
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("reading the state directory %s: %w", s.Dir, err)
	}
	var errs []error
	defer s.closeUnseen()
	for _, k := range keys {
		// A first look, without the lock, at the parsed record: most
		// records need nothing (their owners run, or are in their grace
		// period as already marked), and are then left at that. What needs
		// something is decided again under the lock on the record as read
		// then.
		if look, err := s.Cached(k); err == nil && look != nil {
			rec := *look
			rec.Owners = slices.Clone(look.Owners) // Prunable marks them; the cached record stays as read
			allStale, due, changed := Prunable(&rec, now, grace, s.stale)
			if !changed && (!allStale || now.Before(due)) {
				if allStale && (next.IsZero() || due.Before(next)) {
					next = due
				}
				continue
			}
		}
		unlock, ok := s.tryLock(k)
		if !ok {
			continue
		}
		rec, lerr := s.Load(k)
		if lerr != nil || rec == nil {
			unlock()
			continue
		}
		allStale, due, changed := Prunable(rec, now, grace, Owner.Stale)
		why := ""
		if allStale && !now.Before(due) {
			why = inUse(rec)
		}
		switch {
		case allStale && !now.Before(due) && why != "":
			if kept == nil {
				kept = map[string]string{}
			}
			kept[k] = why
			if changed {
				errs = append(errs, s.Save(rec))
			}
		case allStale && !now.Before(due):
			if rerr := remove(k, rec); rerr != nil {
				errs = append(errs, rerr)
			} else {
				removed = append(removed, k)
			}
		case changed:
			if serr := s.Save(rec); serr != nil {
				errs = append(errs, serr)
			}
		}
		if allStale && now.Before(due) && (next.IsZero() || due.Before(next)) {
			next = due
		}
		unlock()
	}
	return removed, kept, next, errors.Join(errs...)
}

// OwnerRuns says which owner's own process (its pid and start time) still
// runs, in another network namespace, or "" (a zombie has ended: the pid
// namespace it was the first process of is empty). Such a container is not
// abandoned: its runtime calls poststop when it exits. A scan of /proc
// cannot stand in for it: a chain of processes that fork and exit in the
// namespace is never where the scan looks, and while the container's first
// process lives, its pid namespace (and the chain in it) lives on.
func OwnerRuns(rec *Record) string {
	for _, o := range rec.Owners {
		if o.Runs() {
			return fmt.Sprintf("the first process %d of container %s still runs (in another network namespace)", o.Pid, o.ID)
		}
	}
	return ""
}

// Runs reports whether the owner's first process (its pid with the start
// time recorded) still runs, in whatever network namespace: a workload
// controls its pid 1, which can move into a namespace of its own while its
// workers stay, and the container has not ended until it exits (its
// runtime calls poststop then). False for a zombie, and for records made
// before the start time was kept.
func (o Owner) Runs() bool {
	if o.Pid <= 0 || o.Start == 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", o.Pid))
	if err != nil {
		return false
	}
	start, err := startTime(stat)
	i := bytes.LastIndexByte(stat, ')')
	return err == nil && start == o.Start && i+3 < len(stat) && !bytes.ContainsAny(stat[i+2:i+3], "ZX")
}
