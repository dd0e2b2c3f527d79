// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fdNsfsRoot stands for the root of the nsfs file system in
// open_by_handle_at(2): FD_NSFS_ROOT, Linux 6.18 and later.
const fdNsfsRoot = -10003

// FileHandle returns the nsfs file handle of the namespace that ns holds
// (name_to_handle_at(2), Linux 6.18 and later), as TYPE:BYTES in hex, or ""
// where the kernel gives none. The handle names the namespace by an id the
// kernel never gives another namespace while it runs, and opens it again
// for as long as anything holds it: a socket made in it too, which no path
// reaches (see Exists).
func FileHandle(ns Handle) string {
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, ns.Path, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return ""
	}
	return strconv.FormatInt(int64(fh.Type()), 16) + ":" + hex.EncodeToString(fh.Bytes())
}

// Exists says whether namespace id, whose file handle is fh (FileHandle),
// still exists, whatever holds it: a process, a bind mount, an open file,
// or only a socket made in it (which Find cannot see). known is false where
// the kernel cannot tell: no handle, a kernel before 6.18, no privilege to
// open by handle. One system call, whatever runs on the host.
func Exists(id ID, fh string) (exists, known bool) {
	t, b, ok := strings.Cut(fh, ":")
	typ, terr := strconv.ParseInt(t, 16, 32)
	data, herr := hex.DecodeString(b)
	if !ok || terr != nil || herr != nil || len(data) == 0 {
		return false, false
	}
	fd, err := unix.OpenByHandleAt(fdNsfsRoot, unix.NewFileHandle(int32(typ), data), unix.O_RDONLY|unix.O_CLOEXEC)
	if errors.Is(err, unix.ESTALE) {
		return false, true // freed: nothing holds it any more
	}
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, false
	}
	// The handle names the namespace by its id and inode number both; a
	// handle from before a reboot could name another that has them too.
	if (ID{Dev: st.Dev, Ino: st.Ino}) != id {
		return false, false
	}
	return true, true
}
