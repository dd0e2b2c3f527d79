package install_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/testnet"
)

// hookBin is the bypass-hook binary built for the tests that register it
// with a real runtime; empty without root.
var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }

// requireHookBin skips a test that needs the built binary.
func requireHookBin(t *testing.T) {
	t.Helper()
	testnet.RequireRoot(t)
	if hookBin == "" {
		t.Skip("skipping: the hook binary is built only as root")
	}
}

// cli runs the built binary with a bare environment and returns its output.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(hookBin, args...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// labConfig writes a config for the lab's proxies with its own state dir
// and hook log, plus extra YAML lines, and returns its path.
func labConfig(t *testing.T, lab *testnet.Lab, extra string) (cfgPath, stateDir, hookLog string) {
	t.Helper()
	dir := t.TempDir()
	stateDir, hookLog = filepath.Join(dir, "state"), filepath.Join(dir, "hook.log")
	cfgPath = filepath.Join(dir, "config.yaml")
	y := fmt.Sprintf("proxies: [%q, %q]\nstateDir: %s\nhookLog: %s\n%s", lab.ProxyV4, lab.ProxyV6, stateDir, hookLog, extra)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, stateDir, hookLog
}

// expectFenced checks from ns that the proxy works over both families and
// a direct connection is refused at once.
func expectFenced(t *testing.T, ns *testnet.Netns, lab *testnet.Lab) {
	t.Helper()
	for _, url := range []string{lab.URLV4, lab.URLV6} {
		body, _, err := testnet.HTTPViaProxy(ns, lab.ProxyV4, url, 10*time.Second)
		if err != nil || body != testnet.LabBody {
			t.Errorf("GET %s through the proxy: %q, %v", url, body, err)
		}
	}
	body, _, err := testnet.HTTPConnect(ns, lab.ProxyV6, lab.URLV6, 10*time.Second)
	if err != nil || body != testnet.LabBody {
		t.Errorf("CONNECT through the IPv6 proxy: %q, %v", body, err)
	}
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		elapsed, err := testnet.DialTCP(ns, addr, 5*time.Second)
		switch {
		case err == nil:
			t.Errorf("direct connect to %s got through; want ECONNREFUSED", addr)
		case !errors.Is(err, syscall.ECONNREFUSED):
			t.Errorf("direct connect to %s: %v after %v; want ECONNREFUSED", addr, err, elapsed)
		default:
			t.Logf("direct connect to %s: refused in %v", addr, elapsed)
		}
	}
}

// expectOpen checks from ns that direct connections get through.
func expectOpen(t *testing.T, ns *testnet.Netns, lab *testnet.Lab) {
	t.Helper()
	for _, addr := range []string{lab.TCPV4, lab.TCPV6} {
		if _, err := testnet.DialTCP(ns, addr, 5*time.Second); err != nil {
			t.Errorf("direct connect to %s: %v; want it to get through (not fenced)", addr, err)
		}
	}
}

// rulesOf returns the rules in ns and whether the hook's chain is there.
func rulesOf(t *testing.T, ns *testnet.Netns) (string, bool) {
	t.Helper()
	rules, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return rules, strings.Contains(rules, "BYPASS-HOOK")
}

// records returns the ids of the owners of every record in a state dir.
func records(t *testing.T, stateDir string) []string {
	t.Helper()
	store, err := hook.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.All()
	if err != nil {
		t.Fatal(err)
	}
	var owners []string
	for _, r := range recs {
		for _, o := range r.Owners {
			owners = append(owners, o.ID)
		}
	}
	return owners
}
