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
func FileHandle(ns Handle) string { return handleAt(ns.Path) }

func handleAt(path string) string {
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return ""
	}
	return strconv.FormatInt(int64(fh.Type()), 16) + ":" + hex.EncodeToString(fh.Bytes())
}

// FindKnown is Find for the namespace a record names by its number id and
// its file handle fh: the kernel gives a freed namespace's inode number to
// the next namespace made, so a path found by number may reach another
// namespace. No two live namespaces share a number, so when the one found
// has another handle, the record's namespace is gone: ok is false. Where
// either handle is unknown (no fh recorded, a kernel before 6.18), the
// number is all there is to go by, as with Find.
func FindKnown(id ID, fh string, hints ...string) (Handle, bool) {
	at, ok := Find(id, hints...)
	if !ok || !handleIs(at.Path, fh) {
		return Handle{}, false
	}
	return at, true
}

// OpenByPath holds namespace id, whose file handle is fh, through a path
// (Find), never by the handle: for what must not bring back a namespace
// that only a socket or a thread holds. The number and the handle are
// checked on the namespace held, as FindKnown checks a path: the path may
// have changed in between.
func OpenByPath(id ID, fh string, hints []string) (Handle, func(), bool) {
	at, ok := Find(id, hints...)
	if !ok {
		return Handle{}, nil, false
	}
	ns, closeNs, err := Open(at.Path)
	if err != nil {
		return Handle{}, nil, false
	}
	if ns.ID != id || !handleIs(ns.Path, fh) {
		closeNs()
		return Handle{}, nil, false
	}
	return ns, closeNs, true
}

// handleIs says whether the namespace at path may be the one whose file
// handle is fh: false only when both handles are known and differ.
func handleIs(path, fh string) bool {
	if fh == "" {
		return true
	}
	got := handleAt(path)
	return got == "" || got == fh
}

// Exists says whether namespace id, whose file handle is fh (FileHandle),
// still exists, whatever holds it: a process, a bind mount, an open file,
// or only a socket made in it (which Find cannot see). known is false where
// the kernel cannot tell: no handle, a kernel before 6.18, no privilege to
// open by handle. One system call, whatever runs on the host.
func Exists(id ID, fh string) (exists, known bool) {
	fd, err := openHandle(id, fh)
	if errors.Is(err, unix.ESTALE) {
		return false, true // freed: nothing holds it any more
	}
	if err != nil {
		return false, false
	}
	unix.Close(fd)
	return true, true
}

// OpenHandle opens namespace id by its file handle fh and holds it, as
// Open does a path: the Handle reaches it through /proc/self/fd until
// closeNs. It reaches a namespace that no path does: one that only a
// thread other than its process's first, or only a socket, holds. The
// descriptor keeps the namespace alive while open, so close it promptly.
// ok is false where Exists would not say true.
func OpenHandle(id ID, fh string) (ns Handle, closeNs func(), ok bool) {
	fd, err := openHandle(id, fh)
	if err != nil {
		return Handle{}, nil, false
	}
	ns, closeNs = heldBy(id, fd)
	return ns, closeNs, true
}

// heldBy is the Handle of namespace id through our descriptor fd.
func heldBy(id ID, fd int) (Handle, func()) {
	return Handle{ID: id, Path: "/proc/self/fd/" + strconv.Itoa(fd)}, func() { unix.Close(fd) }
}

// openHandle opens namespace id by its file handle fh: the one place that
// does. The error is ESTALE when the namespace is gone; any other means
// the kernel cannot tell.
func openHandle(id ID, fh string) (int, error) {
	t, b, ok := strings.Cut(fh, ":")
	typ, terr := strconv.ParseInt(t, 16, 32)
	data, herr := hex.DecodeString(b)
	if !ok || terr != nil || herr != nil || len(data) == 0 {
		return -1, errNoHandle
	}
	fd, err := unix.OpenByHandleAt(fdNsfsRoot, unix.NewFileHandle(int32(typ), data), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	// The handle names the namespace by its id and inode number both; a
	// handle from before a reboot could name another that has them too.
	if (ID{Dev: st.Dev, Ino: st.Ino}) != id {
		unix.Close(fd)
		return -1, errNotThatNamespace
	}
	return fd, nil
}

var (
	errNoHandle         = errors.New("no file handle of the namespace")
	errNotThatNamespace = errors.New("the file handle opens another namespace")
)
