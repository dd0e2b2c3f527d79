// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// TestMonitorForgedKernelLines (issue 19, hole 3): with log.target kernel,
// an unprivileged process (uid 65534, no capability) makes a user and
// network namespace of its own, writes a LOG rule there with a fenced
// container's prefix and sends packets through it: the kernel log gets
// lines that look like the container's. The monitor must not report them
// as the container's attempts; a real attempt of the container still is.
func TestMonitorForgedKernelLines(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "unshare", "setpriv", "nft", "busybox")
	prepareTarget(t, config.LogKernel)
	stem := testnet.RandName("f")
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: kernel, prefix: %s}\n", proxyAddr, stem))
	mon := startMonitor(t, cfgPath)
	kmsg := testnet.OpenKmsg(t)
	s := newSleeper(t, cfgPath)
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
	prefix := rules.LogPrefix(stem, s.id)

	// The forger: 50 pings to its own loopback through a LOG rule of its
	// own, with no rate limit, under the victim's prefix.
	const forged = 50
	script := fmt.Sprintf(`nft add table ip t && nft add chain ip t o '{ type filter hook output priority 0; }' && nft add rule ip t o icmp type echo-request log prefix '"%s"' && ip link set lo up && busybox ping -q -c %d -i 0.01 127.0.0.1 >/dev/null; echo forged-done`, prefix, forged)
	out, err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
		"unshare", "-Urn", "sh", "-c", script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "forged-done") {
		t.Skipf("skipping: the unprivileged forger could not run (unprivileged user namespaces off?): %v: %s", err, out)
	}
	if _, err := kmsg.Wait(5*time.Second, prefix, "PROTO=ICMP"); err != nil {
		t.Fatalf("the forged lines are not in the kernel log (nf_log_all_netns?): %v", err)
	}
	t.Logf("the forger wrote %d kernel log lines with the prefix %q from its own namespace", forged, prefix)

	// A real attempt of the container, after the forgery: its event must
	// come, and be the only one.
	if err := s.dial(refusedAddr); err == nil {
		t.Fatal("the sleeper's direct connection was let through")
	}
	mon.waitEvents(s.id, 1, eventWait)
	time.Sleep(300 * time.Millisecond)
	evs := mon.eventsOf(s.id)
	var icmp int
	for _, ev := range evs {
		if ev.Proto == "icmp" {
			icmp++
		}
	}
	if icmp > 0 || len(evs) != 1 {
		t.Errorf("the monitor reported %d events for %s (%d of them the forger's ICMP), want 1 (its real attempt): %+v", len(evs), s.id, icmp, evs)
	}
	fams := mon.scrape(t)
	if n := metric(fams, "bypass_hook_kernel_lines_unverified_total", nil); n < forged {
		t.Errorf("bypass_hook_kernel_lines_unverified_total = %v, want at least %d", n, forged)
	}
	if n := metric(fams, "bypass_hook_attempts_total", map[string]string{"proto": "icmp"}); n > 0 {
		t.Errorf("bypass_hook_attempts_total counts %v forged ICMP attempts", n)
	}
}
