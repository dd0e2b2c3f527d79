// SPDX-License-Identifier: Apache-2.0

// Package lean holds the per-container binaries (the hook, the runtime
// wrapper) to the packages they may link: each is started for every
// container, and every package it links is initialised on every start.
package lean

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Heavy are the CLI's heavy dependencies (NRI and its protobuf, ttrpc and
// wazero, Prometheus and its /proc reader, Kubernetes, the monitor's file
// watcher) and the CLI's own packages: no per-container binary links them.
var Heavy = []string{
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

// Forbid fails t for each package the main package in the working
// directory (the binary called name) links under one of the prefixes
// forbidden. The bench's inittrace shows the cost; this stops the change.
func Forbid(t *testing.T, name string, forbidden []string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testnet.SkipOrFail(t, "no go tool in PATH to list the binary's packages")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("%s links %s: a package a per-container binary must not initialise (see `go mod why -m` and docs/bench.md)", name, pkg)
			}
		}
	}
}
