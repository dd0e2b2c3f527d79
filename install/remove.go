// SPDX-License-Identifier: Apache-2.0

package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/internal/fserr"
)

// RemoveHooksDir removes the hooks.d file that WriteHooksDir writes into
// dir under root, and reports whether there was one. A file of that name
// that does not run bypass-hook is someone else's: it is left alone, with
// an error.
func RemoveHooksDir(root, dir string) (path string, removed bool, err error) {
	path = filepath.Join(root, dir, HooksDirFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, false, nil
	}
	if err != nil {
		return path, false, fmt.Errorf("reading %s: %w", path, fserr.Cause(err))
	}
	var e HooksDirEntry
	if err := json.Unmarshal(data, &e); err != nil || !IsOurs(e.Hook.Path, "") {
		return path, false, fmt.Errorf("%s does not run bypass-hook; leaving it alone", path)
	}
	if err := os.Remove(path); err != nil {
		return path, false, fmt.Errorf("removing %s: %w", path, fserr.Cause(err))
	}
	return path, true, nil
}
