// SPDX-License-Identifier: Apache-2.0

package main

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/lean"
)

// The hook binary is started once per container and stage: none of the
// CLI's packages and heavy dependencies, nor eBPF (the monitor's), may
// creep in.
func TestLinksOnlyTheHook(t *testing.T) {
	lean.Forbid(t, "bypass-hook-oci", append(lean.Heavy, "github.com/cilium/ebpf"))
}
