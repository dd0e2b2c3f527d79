// SPDX-License-Identifier: Apache-2.0

package runc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// TestDemo runs `make demo`'s script as the README's first command runs it,
// with the CLI just built, and checks that it shows what the README says it
// shows: the proxied request works, the direct one is refused, the log line,
// a whole fence, and nothing left after runc delete.
func TestDemo(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "runc", "tinyproxy", "busybox", "ip", "nsenter", "iptables", "nft", "dmesg")
	// The demo sets the sysctl for its run and puts back what it found;
	// holding it here keeps other packages' tests from putting it back first.
	testnet.KernelNetnsLog(t)
	out, err := exec.Command("bash", "../../scripts/demo.sh", hookBin).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"hello from the server",
		"Connection refused",
		"DST=198.51.100.1",
		"whole      yes",
		"no fence left in the container's namespace",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
}

// A dynamically linked busybox (Debian's package busybox) cannot run alone
// in the demo container's root: the demo says so, and what to install,
// before it makes anything (runc alone says "exec failed").
func TestDemoRefusesDynamicBusybox(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "runc", "tinyproxy", "ip", "nsenter", "iptables", "nft")
	dynamic, err := exec.LookPath("true") // a dynamically linked program, as Debian builds it
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(dynamic, filepath.Join(bin, "busybox")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "../../scripts/demo.sh", hookBin)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not statically linked") || !strings.Contains(string(out), "apt-get install -y busybox-static") {
		t.Errorf("demo with a dynamic busybox: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Network:") {
		t.Errorf("the demo started before it refused the busybox:\n%s", out)
	}
}
