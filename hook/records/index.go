// SPDX-License-Identifier: Apache-2.0

package records

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The index by container lets poststop find its record without reading the
// others. Each owner has a directory owners/HASH (HASH of its id and
// bundle) that holds an empty file named by the key of each record that
// names it: usually one, two where a container was created again under its
// id and bundle in another namespace before a prune took the old record.
// Entries are made and removed under the lock of the record they name (see
// Save and Delete), so each record's entries never race, and they are made
// before the record names the owner and removed after: whatever moment a
// hook dies, every owner a record names has its entry. An entry whose record
// does not name its owner is harmless (the lookup reads the record and
// passes it by) and prune's Sweep removes it.
const ownersDir = "owners"

// indexedMark says every record in the directory has its entries: made by
// the first lookup or sweep that finds it missing, after it indexed the
// records an older bypass-hook wrote without them. Until it exists, a
// lookup that the index does not answer reads every record.
const indexedMark = ".indexed"

// ownerHash names an owner's directory in the index.
func ownerHash(id, bundle string) string {
	sum := sha256.Sum256([]byte(id + "\x00" + cleanBundle(bundle)))
	return hex.EncodeToString(sum[:16])
}

func (s *Store) ownerDir(id, bundle string) string {
	return filepath.Join(s.Dir, ownersDir, ownerHash(id, bundle))
}

// index makes o's entry for record key; the caller holds key's lock.
func (s *Store) index(o Owner, key string) error {
	dir := s.ownerDir(o.ID, o.Bundle)
	entry := filepath.Join(dir, key)
	for range 3 {
		err := mkdirs(filepath.Dir(dir), dir)
		if err == nil {
			var fd int
			fd, err = unix.Open(entry, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err == nil {
				return unix.Close(fd)
			}
			err = &os.PathError{Op: "create", Path: entry, Err: err}
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		// Another record's hook removed the owner's directory, empty,
		// between our mkdir and our create: make it again.
	}
	return &os.PathError{Op: "create", Path: entry, Err: unix.ENOENT}
}

// unindex removes o's entry for record key, and o's directory once empty;
// the caller holds key's lock.
func (s *Store) unindex(o Owner, key string) {
	dir := s.ownerDir(o.ID, o.Bundle)
	_ = os.Remove(filepath.Join(dir, key))
	_ = unix.Rmdir(dir) // ENOTEMPTY while another record names the owner
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := unix.Mkdir(d, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: d, Err: err}
		}
	}
	return nil
}

// FindOwner returns the key of the record that the container with this id
// and bundle owns, reading only the records its index entries name; where
// two do (the container created again elsewhere), the one it joined last.
// The caller locks the record and checks again.
func (s *Store) FindOwner(id, bundle string) (string, bool) {
	names, err := readNames(s.ownerDir(id, bundle))
	if err != nil && !s.indexed() {
		return s.scanFor(id, bundle)
	}
	var best string
	var since Owner
	for _, k := range names {
		r, err := s.Load(k)
		if err != nil || r == nil {
			continue
		}
		for _, o := range r.Owners {
			if o.Is(id, bundle) && (best == "" || o.Since.After(since.Since)) {
				best, since = k, o
			}
		}
	}
	return best, best != ""
}

// LockOwned finds the record that the container with this id and bundle
// owns and returns it locked, as read under its lock; the caller unlocks.
// Where the index names one record for the container (the usual case) it
// reads that one only, once, under its lock; where it names more (the
// container created again elsewhere before a prune took the old record) it
// reads each to find the one the container joined last (FindOwner). rec is
// nil, and nothing stays locked, when no record the container could be
// found by names it now, or it cannot be read (UnreadableFor says which).
func (s *Store) LockOwned(id, bundle string, deadline time.Time) (rec *Record, unlock func(), err error) {
	names, err := readNames(s.ownerDir(id, bundle))
	var key string
	switch {
	case err == nil && len(names) == 1 && strings.HasPrefix(names[0], "netns-"):
		key = names[0]
	case err != nil && s.indexed():
		return nil, nil, nil // never fenced, or its record is gone
	default:
		var ok bool
		if key, ok = s.FindOwner(id, bundle); !ok {
			return nil, nil, nil
		}
	}
	unlock, err = s.LockBy(key, deadline)
	if err != nil {
		return nil, nil, err
	}
	rec, err = s.Load(key)
	if err != nil || rec == nil || !rec.Owns(id, bundle) {
		s.forgetLock(key) // LockBy made one for a record that is gone
		unlock()
		return nil, nil, nil
	}
	return rec, unlock, nil
}

// Forget removes the container's index entries that name records which do
// not name it (a create killed between the entry and the record); poststop
// calls it when FindOwner finds nothing. Records a running hook holds are
// passed over.
func (s *Store) Forget(id, bundle string) {
	h := ownerHash(id, bundle)
	keys, _ := readNames(s.ownerDir(id, bundle))
	for _, k := range keys {
		s.dropEntry(h, k)
	}
	if len(keys) > 0 {
		_ = unix.Rmdir(s.ownerDir(id, bundle))
	}
}

// UnreadableFor lists the records that may be the container's and cannot
// be read or parsed: those its index entries name (an entry is made before
// its record names the owner). Until the records an older bypass-hook wrote
// are indexed, every unreadable record may be.
func (s *Store) UnreadableFor(id, bundle string) []string {
	if !s.indexed() {
		return s.Unreadable()
	}
	keys, _ := readNames(s.ownerDir(id, bundle))
	var bad []string
	for _, k := range keys {
		if _, err := s.Load(k); err != nil && !os.IsNotExist(err) {
			bad = append(bad, s.path(k, ".json"))
		}
	}
	return bad
}

func (s *Store) indexed() bool {
	_, err := os.Lstat(filepath.Join(s.Dir, ownersDir, indexedMark))
	return err == nil
}

// scanFor reads every record for the container, as before the index: only
// until the records an older bypass-hook wrote are indexed, which it then
// does.
func (s *Store) scanFor(id, bundle string) (string, bool) {
	recs, _ := s.indexAll()
	for _, r := range recs {
		if r.Owns(id, bundle) {
			return r.Netns.Key(), true
		}
	}
	return "", false
}

// indexAll makes the entries of every record's owners and then the mark
// that says they all have them. Records saved meanwhile index themselves.
func (s *Store) indexAll() ([]*Record, error) {
	recs, err := s.All()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range recs {
		for _, o := range r.Owners {
			errs = append(errs, s.index(o, r.Netns.Key()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return recs, err
	}
	return recs, s.markIndexed()
}

// markIndexed says that every record has its index entries.
func (s *Store) markIndexed() error {
	mark := filepath.Join(s.Dir, ownersDir, indexedMark)
	if err := mkdirs(filepath.Dir(mark)); err != nil {
		return err
	}
	return os.WriteFile(mark, nil, 0o600)
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// Sweep tidies what hooks that died mid-way left in the state directory:
// index entries whose record does not name their owner, temporary files
// of interrupted writes, lock files without a record, and the index of
// records an older bypass-hook wrote. It returns the keys of the records
// left incomplete (see Record.Incomplete), for Incomplete. It reads every
// record once, without locks, and takes a record's lock only to remove
// what it finds wrong: `prune` and the monitor run it, never a container's
// hook. Records a running hook holds are passed over.
func (s *Store) Sweep() (incomplete []string, err error) {
	var errs []error
	if !s.indexed() {
		_, err := s.indexAll()
		errs = append(errs, err)
	}
	recs, err := s.all(s.Cached) // read only
	if err != nil {
		return nil, err
	}
	named := map[string]bool{} // hash/key of each owner a record names
	for _, r := range recs {
		k := r.Netns.Key()
		for _, o := range r.Owners {
			named[ownerHash(o.ID, o.Bundle)+"/"+k] = true
		}
		if r.Incomplete != "" {
			incomplete = append(incomplete, k)
		}
	}
	hashes, _ := readNames(filepath.Join(s.Dir, ownersDir))
	for _, h := range hashes {
		if h == indexedMark {
			continue
		}
		dir := filepath.Join(s.Dir, ownersDir, h)
		keys, _ := readNames(dir)
		dropped := len(keys) == 0
		for _, k := range keys {
			if strings.HasPrefix(k, "netns-") && !named[h+"/"+k] && s.dropEntry(h, k) {
				dropped = true
			}
		}
		if dropped {
			_ = unix.Rmdir(dir)
		}
	}
	entries, rerr := os.ReadDir(s.Dir)
	errs = append(errs, rerr)
	for _, e := range entries {
		// Temporary files of interrupted writes, and lock files a hook
		// killed before its record's first save left alone.
		k, tmp := strings.CutSuffix(e.Name(), ".json.tmp")
		if !tmp {
			k, _ = strings.CutSuffix(e.Name(), ".lock")
		}
		if k == e.Name() || !strings.HasPrefix(k, "netns-") {
			continue
		}
		if unlock, err := s.lockOnce(k, tmp); err == nil {
			if tmp {
				_ = os.Remove(s.path(k, ".json.tmp"))
			}
			s.forgetLock(k)
			unlock()
		}
	}
	return incomplete, errors.Join(errs...)
}

// dropEntry removes the index entry of owner hash h for record k if the
// record does not name that owner; it reports whether it did.
func (s *Store) dropEntry(h, k string) bool {
	unlock, err := s.lockOnce(k, true)
	if err != nil {
		return false
	}
	defer unlock()
	r, err := s.Load(k)
	if err != nil {
		return false
	}
	if r != nil {
		for _, o := range r.Owners {
			if ownerHash(o.ID, o.Bundle) == h {
				return false
			}
		}
	}
	// The entry before the lock file: a create that locks a new lock file
	// after this makes its own entry after this.
	ok := os.Remove(filepath.Join(s.Dir, ownersDir, h, k)) == nil
	s.forgetLock(k)
	return ok
}

// forgetLock removes the lock file of k when k has no record: the caller
// made it to look. The caller holds the lock.
func (s *Store) forgetLock(k string) {
	if _, err := os.Lstat(s.path(k, ".json")); errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(s.path(k, ".lock"))
	}
}

// Incomplete calls fn, under the record's lock, for each of keys (from
// Sweep) whose record is still incomplete: left so by a hook that died
// mid-way, since a running hook holds its record's lock until it is
// complete. Records a running hook holds are passed over.
func (s *Store) Incomplete(keys []string, fn func(key string, rec *Record) error) error {
	var errs []error
	for _, k := range keys {
		unlock, ok := s.tryLock(k)
		if !ok {
			continue
		}
		if rec, err := s.Load(k); err == nil && rec != nil && rec.Incomplete != "" {
			errs = append(errs, fn(k, rec))
		}
		unlock()
	}
	return errors.Join(errs...)
}
