// SPDX-License-Identifier: Apache-2.0

// Package testnet is the shared test infrastructure of bypass-hook's integration
// and end-to-end tests: network namespaces, a lab with a proxy and servers in a
// namespace of its own, probes that run inside a namespace (also as another uid),
// a guard on the host's own firewall, and runc bundles.
//
// Everything it makes lives in namespaces it created, with unique names, and is
// removed through t.Cleanup. Nothing is ever added to the machine's own network
// namespace. It is imported only from _test.go files, whose package has:
//
//	func TestMain(m *testing.M) {
//		testnet.MaybeRunProbe()          // serves RunProbeAs in the re-executed binary
//		os.Exit(testnet.GuardHost(m))    // fails the run if the host's firewall changed
//	}
//
// A typical test: lab := NewLab(t); c := lab.AddClient(t); then a runc bundle
// joined to c.Path, and probes such as DialTCP(c.Netns, lab.TCPV4, time.Second).
package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Runtimes and sudo often give a short PATH; the tools live in these.
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// cmdTimeout bounds every helper command, so a wedged tool fails the test
// instead of hanging it.
const cmdTimeout = 60 * time.Second

// Tool returns the absolute path of an executable, from PATH or the usual
// system directories.
func Tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range toolDirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %s", name, strings.Join(toolDirs, ", "))
}

// Required reports whether a missing tool or root fails a test rather than
// skipping it: under CI (CI=true) or BYPASS_HOOK_E2E_REQUIRE=1, where
// .ci/run installs every tool the tests use, a skip would hide that a test
// did not run.
func Required() bool {
	return os.Getenv("BYPASS_HOOK_E2E_REQUIRE") == "1" || os.Getenv("CI") == "true"
}

// SkipOrFail skips the test with a message saying what is missing, or
// fails it where Required.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("missing under CI or BYPASS_HOOK_E2E_REQUIRE=1, where .ci/run installs it: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// RequireRoot skips the test unless it runs as root (fails it where
// Required).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (running as euid %d)", os.Geteuid())
	}
}

// RequireTools skips the test, naming every missing tool, unless all are
// found (fails it where Required).
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := Tool(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		SkipOrFail(t, "missing tools: %s (looked in PATH and %s)",
			strings.Join(missing, ", "), strings.Join(toolDirs, ", "))
	}
}

// RandName returns prefix followed by 6 random hex digits, so names made by
// concurrent test runs never collide.
func RandName(prefix string) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// run runs a tool with a timeout and returns its combined output; the error
// names the command line and carries the output.
func run(stdin string, name string, args ...string) (string, error) {
	path, err := Tool(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if stdin != "" {
			msg += "\nstdin was:\n" + stdin
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}
