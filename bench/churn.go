// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/churnreport"
)

// churnReport is the monitor's churn test (TestMonitorChurn) as the bench
// runs it: the test drives the churn and counts what was lost; the bench
// reads its summaries, so the figures are the test's own counts.
type churnReport struct {
	total, batch int
	machine      string // at the start
	wall         time.Duration
	failed       bool   // the test failed
	failures     string // its failure lines, when it did
	runs         []churnreport.Summary
}

// churnBench runs `go test -v -run '^TestMonitorChurn$' ./monitor/ -churn
// total -churn-batch batch` from the module's root (the current
// directory, as `make bench` runs it). BYPASS_HOOK_E2E_REQUIRE=1 turns a
// missing tool into a failure, not a skip that would report nothing.
func churnBench(goTool string, total, batch int) (*churnReport, error) {
	if _, err := os.Stat("monitor/churn_test.go"); err != nil {
		return nil, fmt.Errorf("the churn runs the monitor's test from the module's root (run `make bench` there): %w", err)
	}
	r := &churnReport{total: total, batch: batch, machine: machine()}
	args := []string{"test", "-count=1", "-v", "-timeout", "60m", "-run", "^TestMonitorChurn$", "./monitor/",
		"-churn", strconv.Itoa(total), "-churn-batch", strconv.Itoa(batch)}
	fmt.Fprintf(os.Stderr, "bench: the churn: %s %s\n", goTool, strings.Join(args, " "))
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), "BYPASS_HOOK_E2E_REQUIRE=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r.wall = time.Since(start)
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		return nil, fmt.Errorf("%s test: %w", goTool, err)
	}
	r.failed = err != nil
	if r.runs, err = churnreport.Parse(out.String()); err != nil {
		return nil, err
	}
	if r.failed {
		r.failures = failureLines(out.String())
	}
	if len(r.runs) == 0 {
		return nil, fmt.Errorf("TestMonitorChurn gave no summary (failed: %v):\n%s", r.failed, out.String())
	}
	return r, nil
}

// failureLines keeps what says why a test failed: its --- FAIL lines and
// the log lines of the failing test, without the monitor's dumps, but with
// the monitor's lines of a container whose count is off (the lines that
// follow "the monitor's log of it:"), which say why.
func failureLines(out string) string {
	var keep []string
	monitorLog := false
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if monitorLog && strings.HasPrefix(t, "{") {
			keep = append(keep, "        "+t[:min(len(t), 300)])
			continue
		}
		monitorLog = false
		if strings.HasPrefix(t, "--- FAIL") || strings.HasPrefix(t, "FAIL") || strings.Contains(t, "_test.go:") && !strings.Contains(t, churnreport.Prefix) {
			monitorLog = strings.HasSuffix(t, "the monitor's log of it:")
			if len(t) > 300 {
				t = t[:300] + "..."
			}
			keep = append(keep, "    "+t)
		}
	}
	if len(keep) > 40 {
		keep = append(keep[:40], fmt.Sprintf("    ... %d more lines", len(keep)-40))
	}
	return strings.Join(keep, "\n")
}

func (r *churnReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nChurn, on %s: TestMonitorChurn -churn %d -churn-batch %d, %s wall:\n\n", r.machine, r.total, r.batch, r.wall.Round(time.Second))
	lost := 0
	for _, s := range r.runs {
		done := ""
		if !s.Completed {
			done = fmt.Sprintf(" (STOPPED EARLY, of %d)", r.total)
		}
		fmt.Fprintf(w, "churn: %d containers%s created and removed in parallel batches of %d, %s, log target %s, monitor running, %.0f s: %d lost records (%d missing after create, %d left after poststop), %d fence rules left, %d lost events, %d doubled events (JSON output); %d lost, %d doubled counts (bypass_hook_attempts_total); monitor goroutines %d before / %d with a batch / %d after, fds %d / %d / %d; the monitor let go of a batch's fences within %.1f s after their poststops (slowest batch)\n",
			s.Containers, done, s.Batch, s.Backend, s.Target, s.Seconds,
			s.MissingRecords+s.LeftRecords, s.MissingRecords, s.LeftRecords, s.LeftRules, s.LostEvents, s.DoubledEvents, s.LostCounts, s.DoubledCounts,
			s.GoroutinesBefore, s.GoroutinesPeak, s.GoroutinesAfter, s.FDsBefore, s.FDsPeak, s.FDsAfter, s.LetGoSeconds)
		lost += s.Lost()
		if !s.Completed {
			lost++ // an early stop lost what it did not run
		}
	}
	if r.failed {
		fmt.Fprintf(w, "TestMonitorChurn FAILED:\n%s\n", r.failures)
	}
	verdict := "met"
	if lost > 0 || r.failed || len(r.runs) < 4 {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "\nChurn target (reported, not asserted), on %s:\n", hostName())
	fmt.Fprintf(w, "  %-62s %6d (target 0 lost/doubled): %s\n", "records, rules, events and counts lost, left or doubled", lost, verdict)
}
