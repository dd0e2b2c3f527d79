// SPDX-License-Identifier: Apache-2.0

package main

import (
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"os/exec"
	"strings"
	"testing"
)

// The hook binary is started once per container and stage, so every
// package it links is initialised on every container start. These are the
// CLI's heavy dependencies (NRI and its protobuf, ttrpc and wazero,
// Prometheus and its /proc reader, Kubernetes, the monitor's file
// watcher) and the CLI's own packages: none of them may creep in. The
// bench's inittrace shows the cost; this test stops the change.
func TestLinksOnlyTheHook(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testnet.SkipOrFail(t, "no go tool in PATH to list the binary's packages")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/containerd/",
		"github.com/prometheus/",
		"google.golang.org/protobuf",
		"google.golang.org/grpc",
		"github.com/tetratelabs/wazero",
		"k8s.io/",
		"github.com/fsnotify/",
		"github.com/bypass-hook/bypass-hook/monitor",
		"github.com/bypass-hook/bypass-hook/nriplugin",
		"github.com/bypass-hook/bypass-hook/check",
		"github.com/bypass-hook/bypass-hook/install",
		"github.com/bypass-hook/bypass-hook/status",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("bypass-hook-oci links %s: a package the per-container hook must not initialise (see `go mod why -m` and docs/bench.md)", pkg)
			}
		}
	}
}
