// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/nftables"
)

// Choose names the backend that fences a namespace. A backend the config
// names is that backend. Under auto, a namespace fenced already keeps the
// backend its record names, so that a container joining a shared namespace
// agrees with the first; a fresh one gets nftables where the kernel has
// nf_tables (one netlink transaction, no host binary run) and iptables where
// it has not. kernelHasNftables is asked only when the answer depends on it.
func Choose(configured, recorded string, kernelHasNftables func() bool) string {
	switch {
	case configured != config.BackendAuto:
		return configured
	case recorded != "":
		return recorded
	case kernelHasNftables():
		return config.BackendNftables
	default:
		return config.BackendIptables
	}
}

// NftablesAvailable returns nil when the kernel answers nf_tables requests
// in the namespace at path (see nftables.Available).
func NftablesAvailable(path string) error { return nftables.Available(path) }
