// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/records"
)

// stamp tells one version of a record's file from another: a record is
// written whole into a new file renamed over the old (records.Store.Save),
// so a new version is a new inode, and its times and size move too.
type stamp struct {
	ino, size    int64
	mtime, ctime unix.Timespec
}

// stampOf is the stamp of the record file of key; ok is false when it
// cannot be had (no such file).
func stampOf(store *records.Store, key string) (st stamp, ok bool) {
	var s unix.Stat_t
	// The store's file name of a record (records.Store.Load reads it).
	if err := unix.Lstat(filepath.Join(store.Dir, key+".json"), &s); err != nil {
		return stamp{}, false
	}
	return stamp{ino: int64(s.Ino), size: s.Size, mtime: s.Mtim, ctime: s.Ctim}, true
}

// load reads the record of key, or takes the one its fence was made from
// while the file is the same: a resync of a node of many fences otherwise
// parses every record again though none changed. The stamp is taken
// before the read, so that a record replaced meanwhile is read again at the
// next look. The monitor never changes a record it holds.
func (m *Monitor) load(key string) (*records.Record, stamp, error) {
	st, ok := stampOf(m.store, key)
	if ok {
		m.mu.Lock()
		old := m.fences[key]
		m.mu.Unlock()
		if old != nil && old.stamp == st {
			return old.rec, st, nil
		}
	}
	rec, err := m.store.Load(key)
	return rec, st, err
}
