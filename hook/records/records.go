// SPDX-License-Identifier: Apache-2.0

// Package records keeps, in the state directory, what the hook installed in
// each network namespace and which containers own it: one locked JSON file
// per namespace, pruned when the namespace is gone.
package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/safefile"
)

// Record is what the hook installed in one network namespace, and for whom.
type Record struct {
	Netns netns.ID `json:"netns"`
	// NsHandle is the namespace's file handle (netns.FileHandle), set at
	// each create: with it a create's prune tells in one system call
	// whether the namespace still exists, also where only a socket made in
	// it holds it. Empty on kernels before 6.18, and in records written
	// before it was kept.
	NsHandle string `json:"nsHandle,omitempty"`
	// Paths reached the namespace at create: the first owner's
	// /proc/PID/ns/net and the bundle's namespace path, if any.
	Paths    []string       `json:"paths"`
	Backend  string         `json:"backend"`
	Digest   string         `json:"digest"`
	Policy   config.Policy  `json:"policy"`
	Features rules.Features `json:"features"`
	// LogID is the container id whose first 12 characters are in the log
	// prefix: the first owner's, which the rules keep after it leaves.
	LogID string `json:"logId"`
	// RuleNames name the installed rules per family, in order, so that
	// counters can be reported by what each rule is for.
	RuleNames map[rules.Family][]string `json:"ruleNames"`
	// RulesDigest is, per family, the digest of the rules as the kernel
	// held them right after the install (backend.Seen): a later reading
	// that differs means the fence is no longer whole.
	RulesDigest map[rules.Family]string `json:"rulesDigest,omitempty"`
	Owners      []Owner                 `json:"owners"`
	Installed   time.Time               `json:"installed"`
	// Incomplete says what a hook was doing to the namespace's rules when
	// it wrote this record and went on to change them: a record is saved
	// so before any rule is touched, and saved again without it after. A
	// record that still has it when its lock is free belongs to a hook
	// that died mid-way (killed, out of memory): the rules may be any mix
	// of before and after, and the next create in the namespace, `prune`
	// or the monitor puts them right. Empty in a complete record.
	Incomplete string `json:"incomplete,omitempty"`

	// Narrowing is what the owners' annotations made of the config's policy
	// (they are alike, or the owners would not share the fence); nil in
	// records written before it was kept.
	Narrowing *config.Narrowing `json:"narrowing,omitempty"`

	// onDisk are the owners that the record's file names, as this value
	// last read it (Load) or wrote it (Save) under the record's lock: Save
	// and Drop take the index entries of owners that left from it, without
	// reading the file again. Nil for a record never loaded or saved.
	onDisk []Owner
}

// Replaces says that r, made afresh, is to be saved over old, the record
// of the same namespace that the caller loaded under the lock it still
// holds (nil when there was none): old's owners that r does not name then
// lose their index entries at r's first save, as if r had been loaded.
func (r *Record) Replaces(old *Record) {
	if old != nil {
		r.onDisk = old.onDisk
	}
}

// What a hook was doing when it left a record incomplete.
const (
	IncompleteInstall = "install" // putting the fence in (again)
	IncompleteSwitch  = "switch"  // taking another backend's fence out
)

// Owner is a container that uses the fence of a namespace. A container is
// known by its id and its bundle: two runtimes, two runc roots or two
// containerd namespaces on one host may each have a container "web".
type Owner struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Bundle string `json:"bundle,omitempty"`
	// Start is when the process of Pid started, in clock ticks after boot
	// (/proc/PID/stat): a pid that another process reuses has another
	// start. 0 in records written before it was kept.
	Start uint64 `json:"start,omitempty"`
	// Cgroup is the cgroup v2 group of that process at create; nil where
	// there is none to tell by, and in records written before it was kept.
	Cgroup *Cgroup   `json:"cgroup,omitempty"`
	Since  time.Time `json:"since"`
	// StaleSince is when a prune first saw the owner's process gone; a
	// fence whose owners are all stale goes a grace period after that.
	StaleSince time.Time `json:"staleSince,omitzero"`
	// Identity names the container's pod where the runtime said (its
	// fields sit beside the id in the JSON).
	oci.Identity
}

// Is reports whether o is the container with this id and bundle.
func (o Owner) Is(id, bundle string) bool {
	return o.ID == id && cleanBundle(o.Bundle) == cleanBundle(bundle)
}

func cleanBundle(b string) string {
	if b == "" {
		return ""
	}
	return filepath.Clean(b)
}

// HasOwner reports whether a container with this id owns the record,
// whatever its bundle: for finding a fence by name (status), never for
// deciding whose it is.
func (r *Record) HasOwner(id string) bool {
	return slices.ContainsFunc(r.Owners, func(o Owner) bool { return o.ID == id })
}

// Owns reports whether the container with this id and bundle owns the
// record.
func (r *Record) Owns(id, bundle string) bool {
	return slices.ContainsFunc(r.Owners, func(o Owner) bool { return o.Is(id, bundle) })
}

// RemoveOwner drops the container with this id and bundle from the owners.
func (r *Record) RemoveOwner(id, bundle string) {
	r.Owners = slices.DeleteFunc(r.Owners, func(o Owner) bool { return o.Is(id, bundle) })
}

// Hints are the paths that may reach the record's namespace: those of
// create, then each owner's process.
func (r *Record) Hints() []string {
	hints := append([]string{}, r.Paths...)
	for _, o := range r.Owners {
		if o.Pid > 0 {
			hints = append(hints, netns.PidPath(o.Pid))
		}
	}
	return hints
}

// Store keeps records in the state directory, one JSON file per namespace,
// each with a lock file so that hooks of one pod do not race.
type Store struct {
	Dir string
	// parsed serves Cached: the monitor, Sweep and ReapAbandoned look at
	// every record each time they run.
	parsed parsed
	// KeepPidfds makes ReapAbandoned keep a pidfd of each owner process
	// it finds running, for its next looks (see pidfds): for a store that
	// lives as long as the process and prunes again and again, the
	// monitor's.
	KeepPidfds bool
	pidfds     pidfds
}

// Open makes the state directory if needed and refuses one that others
// could write: records decide which rules get removed.
func Open(dir string) (*Store, error) {
	_, err := os.Lstat(dir)
	fresh := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return nil, fmt.Errorf("state directory %s is not a directory", dir)
	case st.Uid != 0:
		return nil, fmt.Errorf("state directory %s is owned by uid %d, not root: fix with `chown root:root %s`", dir, st.Uid, dir)
	case st.Mode&0o077 != 0:
		return nil, fmt.Errorf("state directory %s has mode %04o; it must not be open to group or others: fix with `chmod 700 %s`", dir, st.Mode&0o7777, dir)
	}
	s := &Store{Dir: dir}
	if fresh {
		// No record an older bypass-hook wrote can be here: the index is
		// complete from the start.
		if err := s.markIndexed(); err != nil {
			return nil, fmt.Errorf("state directory %s: %w", dir, err)
		}
	}
	return s, nil
}

func (s *Store) path(key, ext string) string { return filepath.Join(s.Dir, key+ext) }

// LockTimeout bounds the wait for a namespace's record lock.
const LockTimeout = 30 * time.Second

// Lock takes the exclusive lock of namespace key's record, waiting up to
// LockTimeout for another hook to let go.
func (s *Store) Lock(key string) (unlock func(), err error) {
	deadline := time.Now().Add(LockTimeout)
	for {
		unlock, err := s.lockOnce(key, true)
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) {
			return unlock, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("record lock %s: held by another hook for more than %s", s.path(key, ".lock"), LockTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// tryLock takes the lock of a record that exists, without waiting; ok is
// false when another hook holds it or the record is gone.
func (s *Store) tryLock(key string) (unlock func(), ok bool) {
	unlock, err := s.lockOnce(key, false)
	return unlock, err == nil
}

// errLockFileGone says the lock file went while we opened it: try again.
var errLockFileGone = errors.New("lock file removed meanwhile")

// lockOnce tries the lock once. Delete removes the lock file while holding
// it, so after locking we check that the file we hold is still the one at
// the path: a hook that locked a removed file must not go on. It returns
// EWOULDBLOCK (wrapped) when another hook holds the lock.
func (s *Store) lockOnce(key string, create bool) (func(), error) {
	p := s.path(key, ".lock")
	flags := unix.O_RDWR | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOFOLLOW
	if create {
		flags |= unix.O_CREAT
	}
	for {
		fd, err := unix.Open(p, flags, 0o600)
		if err != nil {
			return nil, fmt.Errorf("record lock %s: %w", p, err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("record lock %s: %w", p, err)
		}
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(p, &now) == nil && held.Ino == now.Ino {
			return func() { unix.Close(fd) }, nil
		}
		unix.Close(fd)
		if !create {
			return nil, fmt.Errorf("record lock %s: %w", p, errLockFileGone)
		}
	}
}

// Load returns the record of namespace key, or nil if there is none.
func (s *Store) Load(key string) (*Record, error) {
	data, err := safefile.Read(s.path(key, ".json"), safefile.MaxRecord, safefile.NoFollow)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("record %s is corrupt: %w", s.path(key, ".json"), err)
	}
	r.onDisk = slices.Clone(r.Owners)
	return &r, nil
}

// Save writes the record atomically and keeps the index by container in
// step; the caller holds its lock, and r is the record as it loaded it
// (Load), saved it (Save), or made it afresh (see Replaces). Save reads no
// record: the owners that the file names until now are those r was loaded
// or last saved with. Each owner's index entry is made before the record
// names it, and the entries of owners it no longer names are removed
// after: an entry may outlive its owner (a crash between the two steps, a
// corrupt record replaced; prune sweeps them), but a record never names an
// owner the index cannot find.
func (s *Store) Save(r *Record) error {
	key := r.Netns.Key()
	final := s.path(key, ".json")
	for _, o := range r.Owners {
		if err := s.index(o, key); err != nil {
			return fmt.Errorf("writing record %s: %w", final, err)
		}
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeAtomic(final, data); err != nil {
		return fmt.Errorf("writing record %s: %w", final, err)
	}
	for _, o := range r.onDisk {
		if !r.Owns(o.ID, o.Bundle) {
			s.unindex(o, key)
		}
	}
	r.onDisk = slices.Clone(r.Owners)
	return nil
}

// SaveIntent saves r marked incomplete with what (IncompleteInstall,
// IncompleteSwitch) before the caller touches the namespace's rules: a hook
// that dies from there on (a runtime's timeout, the OOM killer) leaves a
// record that says its rules may be any mix of before and after, which
// status shows and the next create, prune and the monitor resolve; rules
// without a record would never be removed. The caller saves r again with
// Incomplete cleared once the rules are as r says, or takes rules and
// record out (Drop); it holds the lock throughout.
func (s *Store) SaveIntent(r *Record, what string) error {
	r.Incomplete = what
	return s.Save(r)
}

// Delete removes the record of key, its owners' index entries and its lock
// file; the caller holds the lock. It reads the record for its owners: a
// caller that has the record uses Drop.
func (s *Store) Delete(key string) error {
	prev, _ := s.Load(key)
	var owners []Owner
	if prev != nil {
		owners = prev.Owners
	}
	return s.delete(key, owners)
}

// Drop removes r's record, its owners' index entries and its lock file
// without reading the record: r is the record as the caller loaded or saved
// it under the lock it holds. Owners r names that were never saved (a save
// that failed after their entries were made) lose their entries too.
func (s *Store) Drop(r *Record) error {
	return s.delete(r.Netns.Key(), append(slices.Clone(r.onDisk), r.Owners...))
}

// delete removes the record of key, the index entries of owners and the
// lock file; the caller holds the lock.
func (s *Store) delete(key string, owners []Owner) error {
	err := os.Remove(s.path(key, ".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, o := range owners {
		s.unindex(o, key)
	}
	_ = os.Remove(s.path(key, ".json.tmp")) // left by a writer killed mid-rename
	err = os.Remove(s.path(key, ".lock"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Keys lists the namespaces that have records; the cache lets go of the
// records not listed (deleted since).
func (s *Store) Keys() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range entries {
		if k, ok := Key(e.Name()); ok {
			keys = append(keys, k)
		}
	}
	s.forget(keys)
	return keys, nil
}

// Key returns the namespace key of a record's file name (or path),
// and false for any other file of the state directory.
func Key(name string) (string, bool) {
	k, ok := strings.CutSuffix(filepath.Base(name), ".json")
	return k, ok && strings.HasPrefix(k, "netns-")
}

// All returns every record, unlocked: a snapshot for status and lookups.
func (s *Store) All() ([]*Record, error) {
	return s.all(s.Load)
}

// all returns every record as load reads it.
func (s *Store) all(load func(key string) (*Record, error)) ([]*Record, error) {
	keys, err := s.Keys()
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, k := range keys {
		r, err := load(k)
		if err != nil || r == nil {
			continue // a record deleted or being replaced meanwhile
		}
		out = append(out, r)
	}
	return out, nil
}

// Alive reports whether owner o's container process still runs in
// namespace id (see Stale).
func (o Owner) Alive(id netns.ID) bool {
	return o.Stale(id) == ""
}

// pruneMinAge spares records written this recently: they belong to a hook
// that has just run, when their namespace was alive.
const pruneMinAge = 2 * time.Second

// pruneBatch is how many records a create looks at for pruning.
const pruneBatch = 4

// liveness is the part of a record that tells whether its namespace lives.
type liveness struct {
	Netns    netns.ID `json:"netns"`
	NsHandle string   `json:"nsHandle"`
	Paths    []string `json:"paths"`
	Owners   []Owner  `json:"owners"`
}

// DropGoneNamespaces deletes records of namespaces that no longer exist: a
// runtime that crashes never calls poststop. A create calls it, so it looks
// at no more than pruneBatch records, and reads each once: those after the
// place in the directory where the last create's look stopped, so that
// creates go round the whole directory in turn and none pays for all of it
// (`prune` and the monitor look at every record). Records locked by a
// running hook, the one in skip, and those written less than pruneMinAge
// ago are left alone.
func (s *Store) DropGoneNamespaces(skip string) (pruned []string) {
	for _, k := range s.nextKeys(pruneBatch) {
		if k == skip {
			continue
		}
		st, ok := stampOf(s.path(k, ".json"))
		if !ok || time.Since(time.Unix(st.mtime.Unix())) < pruneMinAge {
			continue
		}
		r, lives := s.namespaceLives(k)
		if lives {
			continue
		}
		unlock, ok := s.tryLock(k)
		if !ok {
			continue
		}
		// Under the lock, the record must still be the version judged: a
		// create may have written a new one meanwhile, for a new namespace
		// that reuses the inode number. A new version is a new file written
		// now, and the one judged was written pruneMinAge ago at least: the
		// same stamp is the same version.
		if now, ok := stampOf(s.path(k, ".json")); ok && now == st && s.delete(k, r.Owners) == nil {
			pruned = append(pruned, k)
		}
		unlock()
	}
	return pruned
}

// namespaceLives reads record k and reports whether its namespace still
// exists: by its file handle where the kernel can tell (whatever holds it,
// a socket alone too), else by whether an owner's process or any path still
// reaches it, which cannot see a namespace that only a socket or an open
// file holds. A record it cannot read counts as living: it is left alone.
// Without a handle, so does one whose owner's first process, or a process
// of its cgroup, still runs elsewhere: it may have left its workers in the
// namespace, held by threads or sockets that no path shows, and a record
// deleted under them would let a later container of the namespace take the
// fence out with its poststop.
func (s *Store) namespaceLives(k string) (liveness, bool) {
	data, err := safefile.Read(s.path(k, ".json"), safefile.MaxRecord, safefile.NoFollow)
	var r liveness
	if err != nil || json.Unmarshal(data, &r) != nil {
		return r, true
	}
	exists, known := netns.Exists(r.Netns, r.NsHandle)
	if known && exists {
		return r, true
	}
	// Gone by its handle too only while nothing of its owners runs: the
	// handle opens a namespace that only a socket holds on the kernels it
	// was tested on (6.18), and a kernel that opened only namespaces with
	// a process in them would have the record dropped under a worker whose
	// pid 1 moved away.
	if AnyOwnerRemains(r.Netns, r.Owners) {
		return r, true
	}
	if known {
		return r, false
	}
	_, ok := netns.FindKnown(r.Netns, r.NsHandle, r.Paths...)
	return r, ok
}

// Unfenced is a running container that the config selects and that the
// NRI plugin found without a fence and could not fence (it started while
// no plugin was connected): `status` shows it.
type Unfenced struct {
	ID  string `json:"id"`
	Pid int    `json:"pid,omitempty"`
	oci.Identity
	Reason string    `json:"reason"`
	Seen   time.Time `json:"seen"`
}

// unfencedFile holds the NRI plugin's list of unfenced containers. Its
// name is no record's, so the record listings pass it by.
const unfencedFile = "unfenced.json"

// SaveUnfenced replaces the list of unfenced containers; an empty list
// removes the file.
func (s *Store) SaveUnfenced(list []Unfenced) error {
	final := filepath.Join(s.Dir, unfencedFile)
	if len(list) == 0 {
		if err := os.Remove(final); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := writeAtomic(final, data); err != nil {
		return fmt.Errorf("writing %s: %w", final, err)
	}
	return nil
}

// Unfenced returns the NRI plugin's list of unfenced containers whose
// process still runs (the plugin may have gone before they stopped).
func (s *Store) Unfenced() ([]Unfenced, error) {
	data, err := safefile.Read(filepath.Join(s.Dir, unfencedFile), safefile.MaxRecord, safefile.NoFollow)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []Unfenced
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", filepath.Join(s.Dir, unfencedFile), err)
	}
	return slices.DeleteFunc(list, func(u Unfenced) bool {
		if u.Pid <= 0 {
			return false
		}
		_, err := os.Stat("/proc/" + strconv.Itoa(u.Pid))
		return err != nil
	}), nil
}
