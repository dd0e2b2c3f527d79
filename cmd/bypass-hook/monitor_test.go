// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// The monitor and status commands' argument handling and exit codes; the
// monitor/ package's tests run them for real.

func TestMonitorStatusUsage(t *testing.T) {
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"monitor", "--config", cfg, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"monitor", "--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"monitor", "--config", "/nonexistent/config.yaml"}, 2, "config file /nonexistent/config.yaml does not exist"},
		{[]string{"status", "--config", cfg, "a", "b"}, 2, "one container at most"},
		{[]string{"status", "--config", "/nonexistent/config.yaml"}, 2, "config file /nonexistent/config.yaml does not exist"},
	} {
		code, stdout, stderr := runCLI(t, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
}

func TestStatusEmpty(t *testing.T) {
	if os.Geteuid() != 0 {
		testnet.RequireRoot(t) // the state directory must be root's
	}
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	if code, out, errb := runCLI(t, "", "status", "--config", cfg); code != 0 || !strings.Contains(out, "no fenced containers") {
		t.Errorf("status of no fences: exit %d, stdout %q, stderr %q", code, out, errb)
	}
	code, out, _ := runCLI(t, "", "status", "--config", cfg, "--json")
	var fences []any
	if code != 0 || json.Unmarshal([]byte(out), &fences) != nil || len(fences) != 0 {
		t.Errorf("status --json of no fences: exit %d, %q; want []", code, out)
	}
	if code, out, _ := runCLI(t, "", "status", "--summary", "--config", cfg); code != 0 || out != "no fenced containers\n" {
		t.Errorf("status --summary: exit %d, %q", code, out)
	}
	if code, _, errb := runCLI(t, "", "status", "--config", cfg, "nope"); code != 1 || !strings.Contains(errb, `no fenced container "nope"`) {
		t.Errorf("status of an unknown container: exit %d, stderr %q", code, errb)
	}
}

// A list of unfenced containers that cannot be read leaves status unable to
// say that every selected container is fenced: exit 1, not 0.
func TestStatusUnreadableUnfencedList(t *testing.T) {
	if os.Geteuid() != 0 {
		testnet.RequireRoot(t) // the state directory must be root's
	}
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]")
	if code, _, errb := runCLI(t, "", "status", "--config", cfg); code != 0 {
		t.Fatalf("status of no fences: exit %d, stderr %q", code, errb)
	}
	list := filepath.Join(filepath.Dir(cfg), "state", "unfenced.json")
	if err := os.WriteFile(list, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errb := runCLI(t, "", "status", "--config", cfg)
	if code != 1 || !strings.Contains(errb, "is corrupt") || !strings.Contains(errb, "unknown") {
		t.Errorf("status with a corrupt unfenced list: exit %d, stdout %q, stderr %q; want exit 1 and the error", code, out, errb)
	}
}

// A metrics address another process serves on (another monitor, the
// default's) stops the monitor with what to do about it.
func TestMonitorMetricsAddrInUse(t *testing.T) {
	testnet.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg, _ := writeConfig(t, "proxies: [198.51.100.1:3128]\nlog: {target: nflog}")
	code, _, errb := runCLI(t, "", "monitor", "--config", cfg, "--metrics-addr", ln.Addr().String())
	if code != 1 || !strings.Contains(errb, "address already in use") || !strings.Contains(errb, `--metrics-addr ""`) {
		t.Errorf("exit %d: %s", code, errb)
	}
}
