// SPDX-License-Identifier: Apache-2.0

package churnreport

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	s := Summary{Backend: "nftables", Target: "kernel", Containers: 500, Batch: 50, Completed: true,
		LostEvents: 1, DoubledCounts: 2, FDsBefore: 44, FDsAfter: 44, GoroutinesPeak: 112}
	for _, tc := range []struct {
		name, out string
		want      []Summary
		err       string
	}{
		{name: "none", out: "=== RUN   TestMonitorChurn\n--- PASS: TestMonitorChurn (1.00s)\n"},
		{name: "as t.Log writes it", out: "=== RUN   TestMonitorChurn/nftables/kernel\n    churn_test.go:80: " + s.Line() + "\n--- PASS\n", want: []Summary{s}},
		{name: "two", out: s.Line() + "\nother\n" + s.Line() + "\n", want: []Summary{s, s}},
		{name: "a field the reader does not know", out: Prefix + `{"backend":"x","lost":3}`, err: "unknown field"},
		{name: "cut short", out: Prefix + `{"backend":`, err: "churn summary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.out)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse: %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestLost(t *testing.T) {
	for _, tc := range []struct {
		s    Summary
		want int
	}{
		{Summary{Containers: 500, Completed: true, FDsBefore: 44, FDsAfter: 45}, 0},
		{Summary{MissingRecords: 1}, 1},
		{Summary{LeftRecords: 2, LeftRules: 1}, 3},
		{Summary{LostEvents: 1, DoubledEvents: 1, LostCounts: 1, DoubledCounts: 1}, 4},
	} {
		if got := tc.s.Lost(); got != tc.want {
			t.Errorf("%+v.Lost() = %d, want %d", tc.s, got, tc.want)
		}
	}
}
