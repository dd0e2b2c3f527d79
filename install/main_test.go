// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"

	"github.com/bypass-hook/bypass-hook/hook/records"
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
		testnet.SkipOrFail(t, "the hook binary is built only as root")
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

// rulesOf returns the rules in ns and whether the hook's chain is there.
func rulesOf(t *testing.T, ns *testnet.Netns) (string, bool) {
	t.Helper()
	rules, err := testnet.RulesIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	return rules, testnet.HasFence(rules)
}

// records returns the ids of the owners of every record in a state dir.
func recordOwners(t *testing.T, stateDir string) []string {
	t.Helper()
	store, err := records.Open(stateDir)
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
