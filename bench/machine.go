// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// machine names the machine a section of the report ran on, with its load
// average then: the scale and churn figures come minutes after the header's,
// and on a shared machine the load moves meanwhile.
func machine() string {
	return fmt.Sprintf("%s, %d CPUs (%s), kernel %s, load average %s", hostName(), runtime.NumCPU(), cpuModel(), kernel(), loadAverage())
}

func hostName() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown host"
	}
	return h
}

// loadAverage is the 1, 5 and 15 minute load average (proc(5)).
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if err != nil || len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
