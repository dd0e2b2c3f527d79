// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

// The monitor's lines of a container whose event is lost are what says why
// (the bench's report is all a CI run leaves): they are kept, though they
// carry no "_test.go:" of their own.
func TestFailureLinesKeepTheMonitorsLogOfAContainer(t *testing.T) {
	out := `=== RUN   TestMonitorChurn/iptables/kernel
    churn_test.go:177: wave 3: 0 events of sl51-sleeper within 2m0s, want 1: []
    churn_test.go:104: no event of sl51-sleeper; the monitor's log of it:
        {"container":"sl51-sleeper","level":"info","msg":"following fence"}
        {"containers":["sl51-sleeper"],"level":"debug","msg":"a kernel log line with our prefix dropped"}
    churn_test.go:239: iptables, kernel: 200 containers fenced
        not a line of the monitor's log
--- FAIL: TestMonitorChurn (151.36s)
`
	got := failureLines(out)
	for _, want := range []string{`"msg":"following fence"`, `"msg":"a kernel log line with our prefix dropped"`, "wave 3: 0 events", "--- FAIL: TestMonitorChurn"} {
		if !strings.Contains(got, want) {
			t.Errorf("failureLines lost %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "not a line of the monitor's log") {
		t.Errorf("failureLines kept a line that follows another test line:\n%s", got)
	}
}
