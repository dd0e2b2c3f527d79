// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
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
// in the namespace at path: one request that lists its inet tables (none,
// in a fresh namespace). A kernel without nf_tables refuses the netlink
// socket or the request.
func NftablesAvailable(path string) error {
	s, err := openNfSock(path)
	if err != nil {
		return err
	}
	defer s.close()
	if _, err := s.dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_INET, nil); err != nil {
		return fmt.Errorf("listing the nf_tables tables in %s: %w", path, nftErr(err))
	}
	return nil
}
