// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/monitor/attrib/attribtest"
	"github.com/bypass-hook/bypass-hook/status"
)

// TestStatusShowsRecentAttempts: a program that makes one direct attempt as
// nobody in a fenced namespace and exits at once shows in `bypass-hook
// status`, asked of the running monitor, with its pid and executable; a
// status that finds no monitor says so in one line and still exits 0.
func TestStatusShowsRecentAttempts(t *testing.T) {
	testnet.RequireRoot(t)
	for _, target := range []string{config.LogKernel, config.LogNflog} {
		t.Run(target, func(t *testing.T) { statusShowsRecent(t, target) })
	}
}

func statusShowsRecent(t *testing.T, target string) {
	prepareTarget(t, target)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: %s, prefix: %s}\n", proxyAddr, target, testnet.RandName("s")))
	mon := startMonitor(t, cfgPath)
	if !strings.Contains(mon.stderr.String(), "attribution on") {
		t.Fatalf("the monitor did not start attribution on a kernel that has it; stderr:\n%s", mon.stderr.String())
	}
	s := newSleeper(t, cfgPath)
	ns := &testnet.Netns{Name: s.id, Path: s.nsPath}
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
	if target == config.LogNflog {
		mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	}

	st := runStatusAt(t, cfgPath, s.id, mon.metrics)
	if st.Recent == nil || len(st.Recent) != 0 {
		t.Fatalf("status before any attempt: recentAttempts %#v, want an empty list", st.Recent)
	}

	pid := attribtest.NewProgram(t, "try-status").Run(t, ns, "tcp", refusedAddr)
	if evs := mon.waitEvents(s.id, 1, eventWait); len(evs) != 1 {
		t.Fatalf("%d events of the attempt, want 1; monitor stderr:\n%s", len(evs), mon.stderr.String())
	}
	st = runStatusAt(t, cfgPath, s.id, mon.metrics)
	if len(st.Recent) != 1 {
		t.Fatalf("status --json shows %d recent attempts, want 1: %+v", len(st.Recent), st.Recent)
	}
	a := st.Recent[0]
	if a.Pid == nil || int(*a.Pid) != pid || int(a.PidInContainer) != pid || a.Exe != "try-status" || a.Comm == "" ||
		a.UID == nil || *a.UID != testnet.Nobody || a.Proto != "tcp" || a.Dst+":"+strconv.Itoa(int(a.Dport)) != refusedAddr || a.Action != ActionRefused {
		t.Errorf("status --json shows %+v; want pid %d, exe try-status, uid %d, tcp to %s, refused", a, pid, testnet.Nobody, refusedAddr)
	}

	text, err := exec.Command(hookBin, "status", "--config", cfgPath, "--monitor", mon.metrics, s.id).CombinedOutput()
	if err != nil {
		t.Fatalf("bypass-hook status: %v:\n%s", err, text)
	}
	row := ""
	for _, line := range strings.Split(string(text), "\n") {
		if strings.Contains(line, "try-status") {
			row = strings.Join(strings.Fields(line), " ")
		}
	}
	want := fmt.Sprintf("refused tcp %s %d %d %d", strings.Replace(refusedAddr, ":", " ", 1), testnet.Nobody, pid, pid)
	if !strings.Contains(row, want) || !strings.HasSuffix(row, " try-status") {
		t.Errorf("status shows the attempt as %q, want %q ... try-status:\n%s", row, want, text)
	}
	t.Logf("status:\n%s", text)

	// No monitor at the address: one line says so, the rest is shown.
	out, err := exec.Command(hookBin, "status", "--config", cfgPath, "--monitor", "127.0.0.1:1", s.id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no monitor answered at 127.0.0.1:1, so no recent attempts are shown") ||
		strings.Contains(string(out), "recent attempts:") || strings.Contains(string(out), "try-status") {
		t.Errorf("status without a monitor: %v:\n%s", err, out)
	}

	// The fence goes: its attempts go with it.
	if err := s.hook("poststop"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 0, eventWait)
	resp, err := http.Get("http://" + mon.metrics + AttemptsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var left []Event
	if err := json.NewDecoder(resp.Body).Decode(&left); err != nil || len(left) != 0 {
		t.Errorf("GET %s after the fence went: %v, %+v; want no attempts", AttemptsPath, err, left)
	}
}

// runStatusAt runs `bypass-hook status --json --monitor ADDR ID` and
// returns its one fence.
func runStatusAt(t *testing.T, cfgPath, id, addr string) status.FenceStatus {
	t.Helper()
	out, err := exec.Command(hookBin, "status", "--config", cfgPath, "--monitor", addr, "--json", id).Output()
	if err != nil {
		t.Fatalf("bypass-hook status %s: %v: %s", id, err, stderrOf(err))
	}
	var fences []status.FenceStatus
	if err := json.Unmarshal(out, &fences); err != nil || len(fences) != 1 {
		t.Fatalf("bypass-hook status --json %s: %v: %s", id, err, out)
	}
	return fences[0]
}
