// SPDX-License-Identifier: Apache-2.0

package backend

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		configured, recorded string
		kernel               bool // the kernel has nf_tables
		want                 string
		asks                 bool // the kernel is asked
	}{
		{config.BackendAuto, "", true, config.BackendNftables, true},
		{config.BackendAuto, "", false, config.BackendIptables, true},
		// a join, or a namespace fenced before: what the record says
		{config.BackendAuto, config.BackendIptables, true, config.BackendIptables, false},
		{config.BackendAuto, config.BackendNftables, false, config.BackendNftables, false},
		// a backend named in the config is that backend, record or not
		{config.BackendIptables, "", true, config.BackendIptables, false},
		{config.BackendNftables, "", false, config.BackendNftables, false},
		{config.BackendIptables, config.BackendNftables, true, config.BackendIptables, false},
		{config.BackendNftables, config.BackendIptables, true, config.BackendNftables, false},
	} {
		asked := false
		got := Choose(tc.configured, tc.recorded, func() bool { asked = true; return tc.kernel })
		if got != tc.want || asked != tc.asks {
			t.Errorf("Choose(%q, %q, kernel has nf_tables: %v) = %q, asked the kernel: %v; want %q, %v",
				tc.configured, tc.recorded, tc.kernel, got, asked, tc.want, tc.asks)
		}
	}
}
