// SPDX-License-Identifier: Apache-2.0

package check

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
)

// configItems say whether the config is valid and what it selects.
func configItems(cfg *config.Config, err error) []Item {
	if err != nil {
		fix := "fix the key named; `bypass-hook config validate FILE` checks a file as the hook reads it"
		if ce := (*config.Error)(nil); errors.As(err, &ce) && (strings.HasPrefix(ce.Msg, "cannot be read") || errors.Is(err, os.ErrNotExist)) {
			fix = "name a config file that exists and root can read (--config, $BYPASS_HOOK_CONFIG, or " + config.DefaultPath + "); `bypass-hook config default` prints one to start from"
		}
		return []Item{{Section: "config", Name: "valid", Status: Fail, Detail: err.Error(), Fix: fix}}
	}
	src := cfg.Path
	if src == "" {
		src = config.DefaultPath + " absent: built-in defaults"
	}
	items := []Item{{Section: "config", Name: "valid", Status: OK, Detail: src}}

	var proxies []string
	for _, p := range cfg.ProxyAddrs() {
		proxies = append(proxies, p.String())
	}
	if len(proxies) == 0 {
		items = append(items, Item{Section: "config", Name: "proxies", Status: Fail,
			Detail: "none: the hook fences nothing",
			Fix:    "list the proxies containers may use (proxies: [IP:port, ...]); `bypass-hook config default` shows the format"})
	} else {
		items = append(items, Item{Section: "config", Name: "proxies", Status: OK, Detail: strings.Join(proxies, ", ")})
	}

	selects := "every container with a network namespace of its own"
	if cfg.Selection == config.SelectAnnotated {
		selects = "only containers annotated bypass-hook.io/enabled=true (or given the CDI device bypass-hook.io/fence)"
	}
	items = append(items, Item{Section: "config", Name: "selection", Status: Info, Detail: cfg.Selection + ": " + selects})

	extra := fmt.Sprintf("allow %d, dns %d, allowUids %v, otherProtocols %s, log %s", len(cfg.Allow), len(cfg.DNS), cfg.AllowUids, cfg.OtherProtocols, cfg.Log.Target)
	switch cfg.Mode {
	case config.ModeAudit:
		items = append(items, Item{Section: "config", Name: "mode", Status: Warn,
			Detail: "audit: direct connections are logged and PASS; " + extra,
			Fix:    "set mode: enforce once the log shows what would be refused"})
	default:
		items = append(items, Item{Section: "config", Name: "mode", Status: OK, Detail: "enforce: direct connections are refused and logged; " + extra})
	}
	if cfg.Failure == config.FailOpen {
		items = append(items, Item{Section: "config", Name: "failure", Status: Warn,
			Detail: "open: a container the hook cannot fence starts UNFENCED",
			Fix:    "set failure: closed once this check passes"})
	}
	return items
}

// stateDirItem checks the state directory as the hook would, without
// making it: an absent one is made by the first create.
func stateDirItem(dir string) Item {
	it := Item{Section: "state", Name: "state directory"}
	var st unix.Stat_t
	err := unix.Lstat(dir, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		it.Status, it.Detail = OK, dir+" absent; the first fenced container makes it (0700, root)"
	case err != nil:
		it.Status, it.Detail = Fail, fmt.Sprintf("%s: %v", dir, err)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		it.Status, it.Detail = Fail, dir+" is not a directory"
		it.Fix = "remove it; the hook makes the directory"
	case st.Uid != 0:
		it.Status, it.Detail = Fail, fmt.Sprintf("%s is owned by uid %d, not root: the hook refuses it", dir, st.Uid)
		it.Fix = "chown root:root " + dir
	case st.Mode&0o077 != 0:
		it.Status, it.Detail = Fail, fmt.Sprintf("%s has mode %04o, open to group or others: the hook refuses it", dir, st.Mode&0o7777)
		it.Fix = "chmod 700 " + dir
	default:
		n := 0
		if entries, err := os.ReadDir(dir); err == nil {
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".json") {
					n++
				}
			}
		}
		it.Status, it.Detail = OK, fmt.Sprintf("%s (0700, root), %d fence record(s); `bypass-hook status` lists them", dir, n)
	}
	return it
}
