// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// nriOnly runs the NRI synchronization figures in this process; set only
// in a binary built with -tags nribench.
var nriOnly func(w io.Writer, dir, hookBin string) error

// nriSyncFigures prints the cost of the NRI plugin's synchronization with
// 100 running pods. It runs in a bench binary of its own, built with
// -tags nribench: linking the plugin (NRI, ttrpc, protobuf) doubles this
// process's resident memory, and every hook the bench starts reports this
// process's memory as its peak (Go forks with CLONE_VM), which would
// inflate the hook's peak RSS column.
func nriSyncFigures(w io.Writer, goTool, dir, hookBin string) error {
	bin := filepath.Join(dir, "bench-nri")
	build := exec.Command(goTool, "build", "-tags", "nribench", "-o", bin, "github.com/bypass-hook/bypass-hook/bench")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the NRI bench: %v\n%s", err, out)
	}
	hook, err := filepath.Abs(hookBin)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-nri-only", dir, "-hook", hook)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	return cmd.Run()
}
