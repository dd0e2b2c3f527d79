// SPDX-License-Identifier: Apache-2.0

package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/iptables"
)

// resolveBackend says which backend the config's choice comes to here.
func resolveBackend(name string, k *kernel) (string, Item) {
	it := Item{Section: "backend", Name: "backend", Status: OK}
	switch name {
	case "auto":
		// As the hook decides: nftables where the kernel has nf_tables.
		got := config.BackendIptables
		if k.has("nf_tables") {
			got = config.BackendNftables
		}
		it.Detail = fmt.Sprintf("auto picks %s (nf_tables: %s)", got, k.found["nf_tables"])
		return got, it
	default:
		it.Detail = name + " (set in the config)"
		return name, it
	}
}

// iptablesTools finds the host's iptables tools as the backend does and
// reads their mode: "nf_tables" or "legacy".
func iptablesTools() (dir, version, mode string, err error) {
	b, err := iptables.New()
	if err != nil {
		return "", "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(b.Dir, "iptables"), "--version").Output()
	if err != nil {
		return b.Dir, "", "", fmt.Errorf("%s --version: %w", filepath.Join(b.Dir, "iptables"), err)
	}
	version = strings.TrimSpace(string(out)) // "iptables v1.8.9 (nf_tables)"
	mode = "legacy"
	if strings.Contains(version, "nf_tables") {
		mode = "nf_tables"
	}
	return b.Dir, version, mode, nil
}

// toolItems reports the iptables tools, and fills the kernel's view of
// their mode (which decides the pieces iptables needs).
func toolItems(k *kernel, backendName string) []Item {
	dir, version, mode, err := iptablesTools()
	it := Item{Section: "tools", Name: "iptables"}
	switch {
	case err != nil && backendName == config.BackendIptables:
		it.Status, it.Detail = Fail, err.Error()
		it.Fix = "apt-get install iptables (or set backend: nftables)"
	case err != nil:
		it.Status, it.Detail = Info, "not found; the nftables backend does not need it ("+err.Error()+")"
	default:
		k.iptablesMod = mode
		it.Status, it.Detail = OK, fmt.Sprintf("%s in %s: mode %s", version, dir, mode)
		if mode == "legacy" && k.has("nf_tables") {
			it.Detail += " (rules go into the legacy tables; `nft` does not show them)"
		}
	}
	return []Item{it}
}

// logSysctlItem checks that the kernel writes LOG lines of container
// namespaces at all: with nf_log_all_netns=0 it drops them.
func logSysctlItem(p Paths, cfg *config.Config) Item {
	if cfg == nil {
		return logSysctlTarget(p, config.LogKernel)
	}
	return logSysctlTarget(p, cfg.Log.Target)
}

// logSysctlTarget is logSysctlItem for fences that log to target.
func logSysctlTarget(p Paths, target string) Item {
	it := Item{Section: "kernel", Name: "nf_log_all_netns"}
	data, err := os.ReadFile(filepath.Join(p.Proc, "sys/net/netfilter/nf_log_all_netns"))
	v := strings.TrimSpace(string(data))
	switch {
	case target != config.LogKernel:
		it.Status, it.Detail = Info, "not needed: log.target nflog logs per namespace"
	case err != nil:
		it.Status, it.Detail = Warn, fmt.Sprintf("cannot be read (%v): LOG lines of containers may be dropped", err)
		it.Fix = "sysctl -w net.netfilter.nf_log_all_netns=1, or log.target: nflog"
	case v == "0":
		it.Status, it.Detail = Warn, "0: the kernel DROPS the LOG lines of container namespaces; refusals are logged nowhere"
		it.Fix = "sysctl -w net.netfilter.nf_log_all_netns=1 and keep it at boot in 90-bypass-hook.conf (make install writes it in /etc/sysctl.d, the package in /usr/lib/sysctl.d), or log.target: nflog"
	default:
		it.Status, it.Detail = OK, v+": LOG lines of container namespaces reach the kernel log"
	}
	return it
}

// KernelLogWarning says why refusals of fences that log to target would be
// logged nowhere (the kernel target with nf_log_all_netns 0), for status to
// print; "" when nothing is wrong.
func KernelLogWarning(target string) string {
	// Only /proc is read: DefaultPaths would also ask dockerd and
	// containerd for their versions, two processes started for nothing
	// at each status.
	it := logSysctlTarget(Paths{Proc: "/proc"}, target)
	if it.Status != Warn {
		return ""
	}
	return "net.netfilter.nf_log_all_netns is " + it.Detail + "; fix: " + it.Fix
}
