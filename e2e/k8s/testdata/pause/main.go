// SPDX-License-Identifier: Apache-2.0

// Command pause is the e2e sandbox image's only process: it waits for SIGTERM or SIGINT and
// exits 0, and reaps the children it inherits (as the Kubernetes pause container does).
//
// Built by scripts/build-k8s-deps.sh into the image localhost/bypass-hook-e2e/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range c {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
