// SPDX-License-Identifier: Apache-2.0

// Command bypass-hook-runtime is an OCI runtime for engines that cannot
// register a hook otherwise (Docker before 25, containerd 1.6 without NRI):
// the engine calls it instead of runc; on create and run it writes
// bypass-hook's hooks into the bundle's config.json where the config
// selects the container (package wrapper), then it becomes the real
// runtime (runc unless told otherwise) with the engine's arguments
// untouched. It links no more than the hook does.
//
//	bypass-hook-runtime [--bypass-hook-config FILE] [--bypass-hook-runtime runc|crun|PATH]
//	                    [--bypass-hook-oci PATH] RUNTIME-ARGS...
//
// The config is, in order, --bypass-hook-config, $BYPASS_HOOK_CONFIG (the
// engine's environment), /etc/bypass-hook/config.yaml; the real runtime
// --bypass-hook-runtime, then $BYPASS_HOOK_RUNTIME, then runc.
// `bypass-hook install docker-runtime` and `install containerd-runtime`
// register it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/bypass-hook/bypass-hook/wrapper"
)

func main() {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bypass-hook-runtime: finding this executable: %v\n", err)
		os.Exit(1)
	}
	plan, err := wrapper.Run(os.Args[1:], self)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bypass-hook-runtime: %v\n", err)
		os.Exit(wrapper.ExitCode(err))
	}
	err = syscall.Exec(plan.Runtime, plan.Argv, os.Environ())
	fmt.Fprintf(os.Stderr, "bypass-hook-runtime: running %s: %v\n", plan.Runtime, err)
	os.Exit(1)
}
