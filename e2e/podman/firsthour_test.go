// SPDX-License-Identifier: Apache-2.0

package podman

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

// A config file that the registration names and that is gone stops the
// container (failure: closed cannot be read from a missing file) with a
// message that says so. podman takes any runtime error that says "no such
// file or directory" for a missing binary (exit 127, "OCI runtime attempted
// to invoke a command that was not found"): the hook's message must not.
func TestPodmanMissingConfig(t *testing.T) {
	e := setup(t, config.SelectAll)
	p := newPodman(t, e.hooksDir)
	if err := os.Remove(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	out, err := p.run("run", "--rm", "--network", "none", image, "true")
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("podman run with the config gone: %v (want a failed run)\n%s", err, out)
	}
	t.Logf("podman run: exit %d\n%s", exit.ExitCode(), out)
	if exit.ExitCode() == 127 || strings.Contains(out, "command that was not found") || strings.Contains(out, "no such file or directory") {
		t.Errorf("podman reads the missing config as a missing command: exit %d\n%s", exit.ExitCode(), out)
	}
	if !strings.Contains(out, "config file "+e.cfgPath+" does not exist") {
		t.Errorf("podman's message does not say that the config file does not exist:\n%s", out)
	}
}
