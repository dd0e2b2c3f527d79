// SPDX-License-Identifier: Apache-2.0

// Package churnreport is the summary the monitor's churn test
// (TestMonitorChurn) logs for each backend and log target, and that `make
// bench` reads from the test's -v output: one definition for the writer and
// the reader, so that the bench reports what the test counted.
package churnreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
)

// Prefix starts a summary line in the test's output, after the file:line
// that t.Logf puts first.
const Prefix = "churn-summary: "

// Summary is one run of the churn: a backend and a log target.
type Summary struct {
	Backend    string  `json:"backend"`
	Target     string  `json:"target"`
	Containers int     `json:"containers"` // created and removed, all waves done
	Batch      int     `json:"batch"`      // created at once, and then removed
	Completed  bool    `json:"completed"`  // false: the test stopped before its last wave
	Seconds    float64 `json:"seconds"`    // the waves' wall time

	// Records: creates that exited 0 and left no record of their
	// container, and records still there after every poststop of a wave.
	MissingRecords int `json:"missingRecords"`
	LeftRecords    int `json:"leftRecords"`
	// Rules of the fence left in a namespace stopped before its process
	// died (every other container), after its poststop.
	LeftRules int `json:"leftRules"`
	// Each container makes one refused attempt: it must show as exactly
	// one event in the monitor's JSON output and one count in
	// bypass_hook_attempts_total. Lost: none; doubled: each one over one.
	LostEvents    int `json:"lostEvents"`
	DoubledEvents int `json:"doubledEvents"`
	LostCounts    int `json:"lostCounts"`
	DoubledCounts int `json:"doubledCounts"`

	// The longest the monitor took, in a wave, to let go of the wave's
	// fences (its gauges back to 0) after their last poststop: a lag, not
	// a loss, while it lasts the monitor follows no new fence.
	LetGoSeconds float64 `json:"letGoSeconds"`

	// The monitor's open files and goroutines before the churn, with a
	// batch fenced, and after it settled.
	FDsBefore        int `json:"fdsBefore"`
	FDsPeak          int `json:"fdsPeak"`
	FDsAfter         int `json:"fdsAfter"`
	GoroutinesBefore int `json:"goroutinesBefore"`
	GoroutinesPeak   int `json:"goroutinesPeak"`
	GoroutinesAfter  int `json:"goroutinesAfter"`
}

// Line is s as the test logs it.
func (s Summary) Line() string {
	b, _ := json.Marshal(s)
	return Prefix + string(b)
}

// Lost is everything that should be zero: records, rules, events and
// counts lost, left or doubled.
func (s Summary) Lost() int {
	return s.MissingRecords + s.LeftRecords + s.LeftRules + s.LostEvents + s.DoubledEvents + s.LostCounts + s.DoubledCounts
}

// Parse finds the summaries in the output of `go test -v`.
func Parse(out string) ([]Summary, error) {
	var all []Summary
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		_, js, ok := strings.Cut(sc.Text(), Prefix)
		if !ok {
			continue
		}
		var s Summary
		dec := json.NewDecoder(strings.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("churn summary %q: %w", js, err)
		}
		all = append(all, s)
	}
	return all, sc.Err()
}
