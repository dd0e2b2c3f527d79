// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	hookbackend "github.com/bypass-hook/bypass-hook/hook/backend"
)

// TestMonitorRunc: a runc container, fenced by the hook in its config.json,
// connects directly to the lab's servers over IPv4 and IPv6, as uid 1000
// and as root; the monitor prints each attempt within 2s with the right
// container, destination, protocol, uid and action, counts it, and status
// shows the same numbers. For each log target, backend and mode.
func TestMonitorRunc(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "runc", "busybox", "tinyproxy")
	lab := testnet.NewLab(t)
	for _, target := range []string{config.LogKernel, config.LogNflog} {
		for _, backend := range hookbackend.Names() {
			for _, mode := range []string{config.ModeEnforce, config.ModeAudit} {
				t.Run(target+"/"+backend+"/"+mode, func(t *testing.T) { runcMonitor(t, lab, target, backend, mode) })
			}
		}
	}
}

func runcMonitor(t *testing.T, lab *testnet.Lab, target, backend, mode string) {
	client := lab.AddClient(t)
	prepareTarget(t, target)
	stem := testnet.RandName("m")
	cfgPath, hookLog := writeConfig(t, fmt.Sprintf("proxies: [%q, %q]\nbackend: %s\nmode: %s\nlog: {target: %s, prefix: %s}\n",
		lab.ProxyV4, lab.ProxyV6, backend, mode, target, stem))
	mon := startMonitor(t, cfgPath)

	hooks := &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", cfgPath, "create"}}},
		Poststop:      []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", cfgPath, "poststop"}}},
	}
	bundle := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: client.Path, Hooks: hooks})
	id := testnet.RandName("mon-") + "-0123456789abcdef"
	if err := bundle.Create(t, id); err != nil {
		t.Fatal(err)
	}
	if err := bundle.Start(t); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", map[string]string{"mode": mode, "target": target}, 1, eventWait)
	if target == config.LogNflog {
		mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	}

	action := ActionRefused
	if mode == config.ModeAudit {
		action = ActionAudited
	}
	// Programs that ignore the proxy: an HTTP GET straight to the lab's
	// server over both families (as uid 1000), a bare TCP connection (as
	// root). Busybox's nc, since its static wget crashes in this rootfs.
	get := func(host netip.Addr) []string {
		return []string{"sh", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s %d`, host, testnet.HTTPPort)}
	}
	attempts := []struct {
		user string
		uid  uint32
		args []string
		dst  string
		port uint16
	}{
		{"1000:1000", 1000, get(lab.ServerV4), lab.ServerV4.String(), testnet.HTTPPort},
		{"1000:1000", 1000, get(lab.ServerV6), lab.ServerV6.String(), testnet.HTTPPort},
		{"0:0", 0, []string{"nc", "-w", "3", lab.ServerV4.String(), fmt.Sprint(testnet.TCPPort)}, lab.ServerV4.String(), testnet.TCPPort},
	}
	for i, a := range attempts {
		start := time.Now()
		out, err := bundle.Runc(append([]string{"exec", "--user", a.user, id}, a.args...)...)
		took := time.Since(start)
		switch {
		case mode == config.ModeEnforce && (err == nil || !strings.Contains(out, "refused")):
			t.Errorf("%v in enforce mode: %v: %s; want connection refused", a.args, err, out)
		case mode == config.ModeAudit && err != nil:
			t.Errorf("%v in audit mode: %v: %s; want it to pass", a.args, err, out)
		case mode == config.ModeAudit && a.port == testnet.HTTPPort && !strings.Contains(out, testnet.LabBody):
			t.Errorf("%v in audit mode got %q, want the lab's page", a.args, out)
		}
		evs := mon.waitEvents(id, i+1, eventWait)
		seen := time.Since(start.Add(took))
		if len(evs) <= i {
			t.Fatalf("no event for %v within %v of it ending (took %s); events of %s: %+v; monitor stderr:\n%s",
				a.args, eventWait, ms(took), id, evs, mon.stderr.String())
		}
		t.Logf("%v as %s: %v in %s; event seen %s after it ended", a.args, a.user, errText(err), ms(took), ms(seen))
		wantEvent(t, evs[i], id, "tcp", a.dst, a.port, a.uid, action)
		if evs[i].Source != target || evs[i].Netns == "" {
			t.Errorf("event source %q netns %q, want %s and the namespace", evs[i].Source, evs[i].Netns, target)
		}
	}
	// Nothing else was logged meanwhile.
	time.Sleep(200 * time.Millisecond)
	evs := mon.eventsOf(id)
	if len(evs) != len(attempts) {
		t.Errorf("%d events, want %d: %+v", len(evs), len(attempts), evs)
	}
	b, _ := json.Marshal(evs[0])
	t.Logf("an event: %s", b)

	if n := metric(mon.scrape(t), "bypass_hook_attempts_total", map[string]string{"container": id, "proto": "tcp", "action": action}); n != float64(len(attempts)) {
		t.Errorf("bypass_hook_attempts_total of %s: %v, want %d", id, n, len(attempts))
	}
	st := runStatus(t, cfgPath, id)
	// Enforce mode refuses every attempt; audit mode lets them through,
	// and counts them.
	wantRefused, wantAudited, verb := uint64(len(attempts)), uint64(0), "refused"
	if mode == config.ModeAudit {
		wantRefused, wantAudited, verb = 0, uint64(len(attempts)), "audited"
	}
	if st.Error != "" || st.Totals == nil || st.Totals.RefusedTCP != wantRefused || st.Totals.AuditedTCP != wantAudited ||
		st.Totals.Logged != uint64(len(evs)) || st.Mode != mode || st.Backend != backend {
		t.Errorf("status: %+v totals %+v; want %d refused TCP, %d audited, %d logged", st, st.Totals, wantRefused, wantAudited, len(evs))
	}
	text, err := exec.Command(hookBin, "status", "--config", cfgPath, id[:12]).CombinedOutput()
	if err != nil || !strings.Contains(string(text), fmt.Sprintf("%s    tcp %d,", verb, len(attempts))) {
		t.Errorf("status %s: %v:\n%s", id[:12], err, text)
	}
	t.Logf("status:\n%s", text)

	if err := bundle.Delete(t); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 0, eventWait)
	mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 0, eventWait)
	// The last owner's poststop wrote what the fence saw into the hook log.
	logData, _ := os.ReadFile(hookLog)
	var summary map[string]any
	for _, line := range strings.Split(string(logData), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && strings.HasPrefix(fmt.Sprint(m["msg"]), "fence summary") {
			summary = m
		}
	}
	if summary == nil || summary["refused_tcp"] != float64(wantRefused) || summary["logged"] != float64(len(evs)) || summary["log_id"] != id {
		t.Errorf("fence summary in the hook log: %v; want refused_tcp %d, logged %d; log:\n%s", summary, wantRefused, len(evs), logData)
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return "failed"
}
