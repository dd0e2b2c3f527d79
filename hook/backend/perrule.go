// SPDX-License-Identifier: Apache-2.0

//go:build perrule

package backend

import (
	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/iptables"
)

// Built only with -tags perrule, for `make bench`: the iptables backend
// installs rule by rule (iptables.PerRule).
func init() {
	backends[config.BackendIptables] = func() (Backend, error) { return iptables.NewPerRule() }
}
