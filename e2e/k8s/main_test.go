package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testnet"
)

// hookBin is the bypass-hook binary built for this run: the NRI plugin and the hook it
// injects. Empty when not root (the tests that need it skip through NewEnv then).
var hookBin string

func TestMain(m *testing.M) {
	testnet.MaybeRunProbe()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() == 0 {
		// Not under the bhk8s- prefix: the harness reaps those directories.
		dir, err := os.MkdirTemp("", "bypass-hook-k8s-bin.")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// runc runs the hook from the host's mount namespace: any path the test can see works.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		hookBin = filepath.Join(dir, "bypass-hook")
		// Built as `make build` builds it: static, so the runtime can run it anywhere.
		cmd := exec.Command("go", "build", "-trimpath", "-o", hookBin, "../../cmd/bypass-hook")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building bypass-hook: %v\n%s", err, out)
			return 1
		}
	}
	return testnet.GuardHost(m)
}
