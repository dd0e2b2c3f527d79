// SPDX-License-Identifier: Apache-2.0

// Package runc proves the hook end to end: a real runc container on a
// busybox root, the hooks in its config.json, run with an empty PATH.
package runc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	"github.com/bypass-hook/bypass-hook/config"
	hookbackend "github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

const timeout = 3 * time.Second

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func TestRuncEndToEnd(t *testing.T) {
	testnet.RequireRoot(t)
	// auto is the default: nftables here, where the kernel has nf_tables.
	for _, backend := range append([]string{config.BackendAuto}, hookbackend.Names()...) {
		t.Run(backend, func(t *testing.T) { runcEndToEnd(t, backend) })
	}
}

func runcEndToEnd(t *testing.T, backend string) {
	lab := testnet.NewLab(t)
	client := lab.AddClient(t)
	testnet.KernelNetnsLog(t)
	kmsg := testnet.OpenKmsg(t)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("proxies: [%q, %q]\nbackend: %s\nstateDir: %s\nhookLog: %s\n",
		lab.ProxyV4, lab.ProxyV6, backend, filepath.Join(dir, "state"), filepath.Join(dir, "hook.log"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// As an operator writes it into config.json: absolute path, no PATH;
	// the hook binary that registrations name.
	oci := testnet.OCIHook(hookBin)
	hooks := &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: oci, Args: []string{"bypass-hook-oci", "--config", cfgPath, "create"}}},
		Poststop:      []specs.Hook{{Path: oci, Args: []string{"bypass-hook-oci", "--config", cfgPath, "poststop"}}},
	}
	bundle := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: client.Path, Hooks: hooks})
	if bundle.Spec.Hooks.CreateRuntime[0].Env != nil {
		t.Fatal("the hook must run with an empty environment")
	}

	before, err := testnet.RulesIn(client.Netns)
	if err != nil {
		t.Fatal(err)
	}
	id := testnet.RandName("e2e-") + "-0123456789abcdef"
	start := time.Now()
	if err := bundle.Create(t, id); err != nil {
		t.Fatal(err)
	}
	t.Logf("runc create with the hook: %s", ms(time.Since(start)))
	if err := bundle.Start(t); err != nil {
		t.Fatal(err)
	}
	logData, _ := os.ReadFile(filepath.Join(dir, "hook.log"))
	t.Logf("hook log:\n%s", logData)
	if !strings.Contains(string(logData), `"action":"fenced"`) {
		t.Fatalf("the hook did not report the fence")
	}

	// From inside the container's namespace.
	body, el, err := testnet.HTTPViaProxy(client.Netns, lab.ProxyV4, lab.URLV4, timeout)
	if err != nil || body != testnet.LabBody {
		t.Errorf("GET through the IPv4 proxy: %q, %v", body, err)
	} else {
		t.Logf("GET through the IPv4 proxy: ok in %s", ms(el))
	}
	if _, el, err := testnet.HTTPConnect(client.Netns, lab.ProxyV6, lab.URLV6, timeout); err != nil {
		t.Errorf("CONNECT through the IPv6 proxy: %v", err)
	} else {
		t.Logf("CONNECT through the IPv6 proxy: ok in %s", ms(el))
	}
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		el, err := testnet.DialTCP(client.Netns, addr, timeout)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("direct TCP to %s: %v; want ECONNREFUSED", addr, err)
		} else {
			t.Logf("direct TCP to %s: ECONNREFUSED in %s", addr, ms(el))
		}
	}
	for _, addr := range []string{lab.UDPV4, lab.UDPV6} {
		// A port unreachable comes back as ECONNREFUSED on the connected
		// socket; a fence that dropped would leave a timeout.
		el, err := testnet.UDPExchange(client.Netns, addr, timeout)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to %s: %v; want ICMP port unreachable (ECONNREFUSED)", addr, err)
		} else {
			t.Logf("UDP to %s: refused in %s", addr, ms(el))
		}
	}
	if el, err := testnet.Loopback(client.Netns, timeout); err != nil {
		t.Errorf("loopback: %v", err)
	} else {
		t.Logf("loopback: ok in %s", ms(el))
	}

	// And from the workload itself, as busybox wget sees it.
	out, err := bundle.Exec(t, "env", "http_proxy=http://"+lab.ProxyV4, "wget", "-q", "-O-", lab.URLV4)
	if err != nil || !strings.Contains(out, strings.TrimSpace(testnet.LabBody)) {
		t.Errorf("wget through the proxy in the container: %v: %s", err, out)
	}
	// busybox wget's -T crashes on a refused connection; timeout(1) bounds it.
	out, err = bundle.Exec(t, "timeout", "5", "wget", "-q", "-O-", lab.URLV4)
	if err == nil || !strings.Contains(out, "refused") {
		t.Errorf("direct wget in the container: want connection refused, got %v: %s", err, out)
	} else {
		t.Logf("direct wget in the container: %s", strings.TrimSpace(out))
	}

	// The kernel logs the attempt with the container, destination and uid.
	prefix := rules.LogPrefix("bypass", id)
	line, err := kmsg.Wait(5*time.Second, prefix, "DST="+lab.ServerV4.String(), "DPT=8080", "PROTO=TCP", "UID=0")
	if err != nil {
		t.Errorf("log line: %v", err)
	} else {
		t.Logf("kernel log: %s", line)
	}

	if err := bundle.Delete(t); err != nil {
		t.Fatal(err)
	}
	after, err := testnet.RulesIn(client.Netns)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the namespace's rules after runc delete differ from before:\n%s", testnet.Diff(before, after))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "state", "netns-*")); len(left) != 0 {
		t.Errorf("records left after runc delete: %v", left)
	}
	logData, _ = os.ReadFile(filepath.Join(dir, "hook.log"))
	if !strings.Contains(string(logData), "fence removed") {
		t.Errorf("poststop did not remove the fence:\n%s", logData)
	}
}

// A container for which runc makes the namespace: the namespace dies with
// it, and poststop finds nothing to remove and exits 0.
func TestRuncOwnNamespace(t *testing.T) {
	testnet.RequireRoot(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("proxies: ['198.51.100.1:3128']\nstateDir: %s\nhookLog: %s\n", filepath.Join(dir, "state"), filepath.Join(dir, "hook.log"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	hooks := &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", cfgPath, "hook"}}},
		Poststop:      []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", cfgPath, "hook"}}},
	}
	bundle := testnet.NewBundle(t, testnet.BundleOpts{Hooks: hooks, Args: []string{"sh", "-c", "timeout 5 wget -q -O- http://198.51.100.1:8080/ 2>&1; sleep 1000"}})
	if err := bundle.Create(t, testnet.RandName("own-")); err != nil {
		t.Fatal(err)
	}
	if err := bundle.Start(t); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(bundle.Output(), "wget") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// No route in a fresh namespace: the fence is not what stops it, but it
	// must not hang either.
	t.Logf("container output: %s", bundle.Output())
	if err := bundle.Delete(t); err != nil {
		t.Fatal(err)
	}
	logData, _ := os.ReadFile(filepath.Join(dir, "hook.log"))
	if !strings.Contains(string(logData), `"action":"fenced"`) || !strings.Contains(string(logData), `"stage":"poststop"`) {
		t.Errorf("hook log:\n%s", logData)
	}
	if strings.Contains(string(logData), `"level":"error"`) {
		t.Errorf("errors in the hook log:\n%s", logData)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "state", "netns-*")); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
}
