// SPDX-License-Identifier: Apache-2.0

package check

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// driftItems reports the fences whose policy is not what the config gives
// now (the config changed since they went in): they keep the old policy,
// wider or narrower, until `apply` or the next container of their
// namespace brings them to it.
func driftItems(cfg *config.Config) []Item {
	if _, err := os.Lstat(cfg.StateDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	store, err := records.Open(cfg.StateDir)
	if err != nil {
		return nil // stateDirItem reports why
	}
	recs, err := store.All()
	if err != nil {
		return nil
	}
	var behind []string
	for _, r := range recs {
		if r.Narrowing == nil {
			continue // an older bypass-hook's record: apply says so
		}
		if p, err := cfg.Narrowed(*r.Narrowing); err != nil || p.Digest() != r.Digest {
			behind = append(behind, r.Netns.String()+" ("+r.LogID+")")
		}
	}
	if len(behind) == 0 {
		return nil
	}
	return []Item{{Section: "fences", Name: "config", Status: Warn,
		Detail: fmt.Sprintf("%d fence(s) have another policy than the config gives now: %s", len(behind), strings.Join(behind, ", ")),
		Fix:    "bypass-hook apply (the NRI plugin does at each config it loads)"}}
}
