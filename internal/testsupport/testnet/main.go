// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// HookPackage is the bypass-hook command (the CLI), built for tests that run
// it; OCIHookPackage is bypass-hook-oci, the hook that runtimes run, and
// RuntimePackage bypass-hook-runtime, the runtime wrapper, built beside it,
// where the CLI's registrations find them by default.
const (
	HookPackage    = "github.com/bypass-hook/bypass-hook/cmd/bypass-hook"
	OCIHookPackage = "github.com/bypass-hook/bypass-hook/cmd/bypass-hook-oci"
	RuntimePackage = "github.com/bypass-hook/bypass-hook/cmd/bypass-hook-runtime"
)

// OCIHook is the path of bypass-hook-oci built beside the CLI at hookBin.
func OCIHook(hookBin string) string {
	return filepath.Join(filepath.Dir(hookBin), "bypass-hook-oci")
}

// Main is the TestMain of a package of root tests:
//
//	var hookBin string
//	func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }
//
// It serves RunProbeAs's children, builds the CLI into *hookBin and
// bypass-hook-oci beside it (OCIHook; as root only, else *hookBin stays
// empty; pass nil to skip the build), and runs the tests under GuardHost.
func Main(m *testing.M, hookBin *string) int {
	MaybeRunProbe()
	if hookBin != nil && os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "bypass-hook-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Runtimes run the hook from anywhere in the host's mount namespace.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*hookBin = filepath.Join(dir, "bypass-hook")
		// As `make build` builds them: static, so any runtime can run them.
		cmd := exec.Command("go", "build", "-trimpath", "-o", dir, HookPackage, OCIHookPackage, RuntimePackage)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testnet: building bypass-hook, bypass-hook-oci and bypass-hook-runtime: %v\n%s", err, out)
			return 1
		}
	}
	return GuardHost(m)
}
