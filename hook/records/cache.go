// SPDX-License-Identifier: Apache-2.0

package records

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A record's file is never edited: Save writes a new file and renames it
// over the old one, so each version of a record is a new inode, with its
// own size and times. A stamp tells one version from another without
// reading it.
type stamp struct {
	ino, size    int64
	mtime, ctime unix.Timespec
}

// stampOf is the stamp of the file at path, not following a symbolic link.
func stampOf(path string) (stamp, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return stamp{}, false
	}
	return stamp{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, true
}

// Settled is how old a file's last change must be before its stamp is
// trusted. A file's times have the kernel's tick for resolution: a version
// written in the same tick as the one read, in a reused inode of the same
// size, would have the same stamp. A version written after the read has a
// later ctime than one that was already this old when read, so a match
// is then the same file (as git does for its index's "racy" entries).
const Settled = time.Second

// parsed keeps the records read through Cached, by namespace key, each
// with the stamp of the file it was parsed from: the monitor (its resync
// and its prune) and `prune` look at every record at every pass, and
// parsing them all is most of what an idle monitor of many fences would
// do. The records it holds are shared: never changed. One store serves
// the monitor and its prune, so that a record is parsed, and held, once.
type parsed struct {
	mu   sync.Mutex
	recs map[string]cached
}

type cached struct {
	st  stamp
	rec *Record
}

// Cached returns the record of key as Load does, for reading only (the
// caller must not change it: it is shared), from the cache while its file
// is the version that was parsed. The stamp is taken before the read: a
// record replaced meanwhile is read again at the next look. A file changed
// less than Settled ago is read but not kept.
func (s *Store) Cached(key string) (*Record, error) {
	path := s.path(key, ".json")
	st, ok := stampOf(path)
	if ok {
		s.parsed.mu.Lock()
		c, hit := s.parsed.recs[key]
		s.parsed.mu.Unlock()
		if hit && c.st == st {
			return c.rec, nil
		}
	}
	rec, err := s.Load(key)
	s.parsed.mu.Lock()
	defer s.parsed.mu.Unlock()
	if err != nil || rec == nil || !ok || time.Since(time.Unix(st.ctime.Unix())) < Settled {
		delete(s.parsed.recs, key)
		return rec, err
	}
	if s.parsed.recs == nil {
		s.parsed.recs = map[string]cached{}
	}
	s.parsed.recs[key] = cached{st: st, rec: rec}
	return rec, nil
}

// forget drops from the cache the records whose key is not in keys (a
// listing of the state directory, Keys): those deleted since.
func (s *Store) forget(keys []string) {
	present := make(map[string]bool, len(keys))
	for _, k := range keys {
		present[k] = true
	}
	s.parsed.mu.Lock()
	defer s.parsed.mu.Unlock()
	for k := range s.parsed.recs {
		if !present[k] {
			delete(s.parsed.recs, k)
		}
	}
}
