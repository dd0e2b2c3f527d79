// SPDX-License-Identifier: Apache-2.0

package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A config that `install config` refuses leaves the node's config as it
// was, and a file beside it that says why: the NRI plugin reports itself
// not ready while it is there, so that rolling out a broken config stops
// visibly at the first node while every node goes on fencing with the
// config it had.

// RejectedPath is the file beside config that says why the config rolled
// out last was refused.
func RejectedPath(config string) string { return config + ".rejected" }

// MarkRejected writes why the config meant for dest was refused.
func MarkRejected(dest string, why error) error {
	return writeFileAtomic(RejectedPath(dest), []byte(why.Error()+"\n"), 0o644)
}

// ClearRejected removes the mark of dest, once a config was written there.
func ClearRejected(dest string) error {
	err := os.Remove(RejectedPath(dest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Rejected says why the config rolled out last for config was refused, and
// whether it was.
func Rejected(config string) (string, bool) {
	f, err := os.Open(RejectedPath(config))
	if err != nil {
		return "", false
	}
	defer f.Close()
	buf := make([]byte, 1024)
	n, _ := f.Read(buf)
	why := strings.TrimSpace(string(buf[:n]))
	if why == "" {
		why = fmt.Sprintf("see %s", RejectedPath(config))
	}
	return why, true
}
