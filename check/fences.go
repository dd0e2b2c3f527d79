// SPDX-License-Identifier: Apache-2.0

package check

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/status"
)

// fenceItems reports the fences already on this node that are not as they
// were installed, or left only to owners whose process is gone. Neither
// stops the node from fencing (so they warn, never fail), but each is a
// namespace that is open, or shut, against what its records say.
func fenceItems(stateDir string) []Item {
	if _, err := os.Lstat(stateDir); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing fenced yet; stateDirItem says so
	}
	store, err := records.Open(stateDir)
	if err != nil {
		return nil // stateDirItem reports why the directory is refused
	}
	fences, err := status.Read(store, "", backend.New)
	if err != nil {
		return []Item{{Section: "fences", Name: "fences", Status: Warn, Detail: err.Error()}}
	}
	var items []Item
	notWhole, stale := 0, 0
	for _, f := range fences {
		if f.Whole != nil && !*f.Whole {
			notWhole++
			items = append(items, Item{
				Section: "fences", Name: "fence of " + f.Container, Status: Warn,
				Detail: fmt.Sprintf("%s is not whole: %s", f.Netns, f.NotWhole),
				Fix:    "the next container in that namespace repairs it; `bypass-hook monitor --repair` does so now",
			})
		}
		if allStale(f.Owners) {
			stale++
			items = append(items, Item{
				Section: "fences", Name: "fence of " + f.Container, Status: Warn,
				Detail: fmt.Sprintf("%s is left only to stale owners (gone, pid reused, or moved to another namespace)", f.Netns),
				Fix:    "bypass-hook prune (it keeps the fence while anything still runs in the namespace)",
			})
		}
	}
	if len(items) == 0 {
		items = append(items, Item{Section: "fences", Name: "fences", Status: OK,
			Detail: fmt.Sprintf("%d fenced namespace(s), each whole, none left to gone owners", len(fences))})
	}
	return items
}

func allStale(owners []status.OwnerStatus) bool {
	for _, o := range owners {
		if !o.Stale {
			return false
		}
	}
	return len(owners) > 0
}
