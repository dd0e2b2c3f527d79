// SPDX-License-Identifier: Apache-2.0

package main

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/lean"
)

// The wrapper is started for every runtime call of every container. It
// only edits a file and execs: not even the hook's own packages
// (netfilter, namespaces, records) belong in it.
func TestLinksOnlyTheWrapper(t *testing.T) {
	lean.Forbid(t, "bypass-hook-runtime", append(lean.Heavy,
		"github.com/bypass-hook/bypass-hook/hook",
		"github.com/cilium/ebpf",
		"github.com/sirupsen/logrus",
	))
}
