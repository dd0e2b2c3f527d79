// SPDX-License-Identifier: Apache-2.0

package records

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// writeAtomic replaces the file at path with data, so that a reader, and a
// writer killed at any moment, find either the old file or the new one,
// whole. The data goes into an unnamed file in the same directory
// (O_TMPFILE), is synced, takes the name path+".tmp" and is renamed over
// path, and the directory is synced: the temporary name exists only between
// the link and the rename, so a full disk or a failed write leaves nothing
// (Delete and the prune's sweep remove a name a killed writer left). Where
// the file system has no unnamed files, a named temporary file is used and
// removed on any error.
func writeAtomic(path string, data []byte) error {
	dir, tmp := filepath.Dir(path), path+".tmp"
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	named := errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL)
	if named {
		fd, err = unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err == nil && !named {
		// A name left by a writer killed between its link and its rename:
		// the caller holds the lock, so that writer is gone.
		_ = os.Remove(tmp)
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			err = &os.LinkError{Op: "link", Old: "unnamed file", New: tmp, Err: err}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
