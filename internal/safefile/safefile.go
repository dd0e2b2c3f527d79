// SPDX-License-Identifier: Apache-2.0

// Package safefile reads the files bypass-hook takes input from (its
// config, a bundle's config.json, its records) so that a file that is not
// what it seems cannot hang or flood it: the file is opened without
// blocking, must be a regular file, and is read only up to a limit. A FIFO
// in place of config.json would otherwise block the hook until the runtime
// killed it.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Limits for what bypass-hook reads: far above any real file of the kind.
const (
	MaxConfig = 1 << 20  // the config file
	MaxBundle = 16 << 20 // a bundle's config.json (seccomp profiles, many mounts)
	MaxRecord = 4 << 20  // a record or list in the state directory
)

// ErrNotRegular is the reason given for a file that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is the reason given for a file over its limit.
var ErrTooLarge = errors.New("larger than bypass-hook reads")

// Follow says whether a symbolic link as the last part of the path is
// followed (a Kubernetes ConfigMap's file is one) or refused.
type Follow bool

// Link choices for Read.
const (
	NoFollow   Follow = false
	FollowLink Follow = true
)

// Read returns the content of the regular file at path, of at most max
// bytes. It never blocks on a FIFO or device: the open is non-blocking and
// anything but a regular file is refused. Errors are *os.PathError, so
// errors.Is(err, os.ErrNotExist) holds for a missing file.
func Read(path string, max int64, follow Follow) ([]byte, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	if follow == NoFollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	if errors.Is(err, unix.ELOOP) && follow == NoFollow {
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("is a symbolic link, which is not followed here")}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil, &os.PathError{Op: "read", Path: path, Err: unix.EISDIR}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s): refused", ErrNotRegular, kind(st.Mode))}
	}
	if st.Size > max {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: %d bytes, at most %d: refused", ErrTooLarge, st.Size, max)}
	}
	// The file may grow after the fstat: read one byte past the limit to
	// see it.
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > max {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: more than %d bytes: refused", ErrTooLarge, max)}
	}
	return data, nil
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}
