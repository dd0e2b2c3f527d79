// SPDX-License-Identifier: Apache-2.0

package records

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cursorFile keeps where in the state directory the last create's prune
// stopped: a directory offset as getdents(2) gives it, which the file
// systems a state directory lives on (tmpfs, ext4, xfs, btrfs) keep valid
// while entries come and go. A lost or torn cursor only starts the round
// again.
const cursorFile = "prune.cursor"

// nextKeys returns up to max record keys from the directory's next entries
// after the cursor, reading one buffer of entries at most, and moves the
// cursor past them (back to the start at the directory's end).
func (s *Store) nextKeys(max int) []string {
	cursorPath := filepath.Join(s.Dir, cursorFile)
	data, _ := os.ReadFile(cursorPath)
	cursor, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	buf := make([]byte, 4096)
	n, err := s.readEntries(cursor, buf)
	if cursor != 0 && (err != nil || n == 0) {
		// Past the end (or a cursor the directory no longer takes): start
		// the round again now rather than look at nothing.
		cursor = 0
		n, err = s.readEntries(0, buf)
	}
	if err != nil {
		return nil
	}
	var keys []string
	next := int64(0) // the directory's end: start again
	for off := 0; off+19 < n && len(keys) < max; {
		reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
		if reclen == 0 || off+reclen > n {
			break
		}
		next = int64(binary.NativeEndian.Uint64(buf[off+8:]))
		name := string(buf[off+19 : off+reclen])
		if i := strings.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if k, ok := Key(name); ok {
			keys = append(keys, k)
		}
		off += reclen
	}
	if next != cursor {
		_ = os.WriteFile(cursorPath, []byte(strconv.FormatInt(next, 10)), 0o600)
	}
	return keys
}

// readEntries reads one buffer of directory entries from offset. The
// directory is opened afresh each time: on ext4, a descriptor sought to
// the end and back to 0 gave no entries.
func (s *Store) readEntries(offset int64, buf []byte) (int, error) {
	fd, err := unix.Open(s.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if _, err := unix.Seek(fd, offset, 0); err != nil {
		return 0, err
	}
	return unix.Getdents(fd, buf)
}
