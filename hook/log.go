// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// OpenLog returns a logger that appends JSON lines to path. When path is
// empty, refused or cannot be opened, it logs to fallback instead, so the
// detail of a failure is never lost; the returned error says why.
func OpenLog(path string, debug bool, fallback io.Writer) (*logrus.Logger, func(), error) {
	log := logging.New(fallback, logging.JSON, debug)
	if path == "" {
		return log, func() {}, nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return log, func() {}, fmt.Errorf("hook log %s: %w", path, err)
	}
	log.SetOutput(f)
	return log, func() { f.Close() }, nil
}

// openLogFile opens path for appending as root may safely do: the hook
// runs as root for every container, and a log path that another user can
// swap (a symlink planted in a directory they may write, a FIFO that
// blocks the hook) would make it write where that user chooses. So the
// directory is made 0700 if missing and must be writable by its owner
// alone, who must be us or root; the file is opened without following a
// symlink or blocking, and must be a regular file.
func openLogFile(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("directory %s: %w", dir, err)
	}
	if int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return nil, fmt.Errorf("refused: its directory %s is owned by uid %d, who could put a symlink there; use a directory owned by root", dir, st.Uid)
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("refused: its directory %s has mode %04o, so others could put a symlink there; use a directory only root may write (chmod go-w %s)", dir, st.Mode&0o7777, dir)
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o640)
	if err == unix.ELOOP {
		return nil, fmt.Errorf("refused: it is a symlink; name the file itself")
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("refused: it is not a regular file")
	}
	return os.NewFile(uintptr(fd), path), nil
}
