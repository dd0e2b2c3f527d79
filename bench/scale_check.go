// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os/exec"
	"time"
)

// checkScale is `bypass-hook check` on the node with the fences and on one
// with none: check reads every fence (whether each is whole, and whether
// any is left to gone owners) and every record (the config's drift).
type checkScale struct {
	full, empty []run
}

// checkBench runs `check --no-self-test` five times with fullCfg's state
// directory and five times with emptyCfg's, alternating. The self-test is
// left out: it fences a namespace of its own in a state directory of its
// own, whatever the node holds, and its log line's wait would hide the
// part that grows with the fences.
func checkBench(cliBin, fullCfg, emptyCfg string) (checkScale, error) {
	var c checkScale
	for range 5 {
		for _, v := range []struct {
			cfg string
			out *[]run
		}{{fullCfg, &c.full}, {emptyCfg, &c.empty}} {
			cmd := exec.Command(cliBin, "--config", v.cfg, "check", "--no-self-test")
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			start := time.Now()
			err := cmd.Run()
			d := time.Since(start)
			if _, exit := err.(*exec.ExitError); err != nil && !exit {
				return c, fmt.Errorf("check: %w", err) // a verdict of "cannot fence" is a time all the same
			}
			*v.out = append(*v.out, measured(cmd, d))
		}
	}
	return c, nil
}

func (c checkScale) print(w io.Writer, fences int) {
	fmt.Fprintf(w, "`bypass-hook check --no-self-test` over %d fences: median %s (CPU %s) of %d runs; with none: %s (CPU %s)\n", fences,
		ms(median(durations(c.full))), ms(median(cpuTimes(c.full))), len(c.full), ms(median(durations(c.empty))), ms(median(cpuTimes(c.empty))))
}
