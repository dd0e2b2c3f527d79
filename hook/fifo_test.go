// SPDX-License-Identifier: Apache-2.0

package hook_test

// Issue 19, hole 4: files that are not what they seem. A FIFO in place of
// the bundle's config.json, or of the config file, once blocked the hook
// until the runtime killed it.

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// runBinWithin runs the hook binary for stage like runHookBin, but fails
// the test if it has not ended within d: a hook that blocks is a hole.
func runBinWithin(t *testing.T, d time.Duration, cfgPath, stage string, st specs.State) (int, string) {
	t.Helper()
	if hookBin == "" {
		t.Skip("skipping: the hook binary is built only as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, testnet.OCIHook(hookBin), "--config", cfgPath, stage)
	cmd.Env = []string{}
	cmd.Stdin = strings.NewReader(stateJSON(st))
	var errb strings.Builder
	cmd.Stderr = &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("bypass-hook %s did not end within %s (blocked on a FIFO?); stderr: %s", stage, d, errb.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), errb.String()
	}
	t.Fatalf("running bypass-hook %s: %v", stage, err)
	return -1, ""
}

func fifoBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, "config.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFIFOBundleConfigDoesNotHang(t *testing.T) {
	lab := testnet.NewLab(t)
	ns := lab.AddClient(t)

	t.Run("create and poststop", func(t *testing.T) {
		e := newEnv(t, lab, "nftables", "")
		c := startIn(t, ns.Netns)
		st := *c.state()
		st.Bundle = fifoBundle(t)
		code, stderr := runBinWithin(t, 10*time.Second, e.cfgPath, "create", st)
		if code != 0 {
			t.Fatalf("create exited %d: %s\nhook log:\n%s", code, stderr, e.hookLog())
		}
		testnet.ExpectRefusedAs(t, ns.Netns, lab, testnet.Nobody)
		if !strings.Contains(e.hookLog(), "not a regular file (a FIFO)") {
			t.Errorf("the hook log does not say config.json is a FIFO:\n%s", e.hookLog())
		}
		st.Status = specs.StateStopped
		st.Pid = 0
		if code, stderr := runBinWithin(t, 10*time.Second, e.cfgPath, "poststop", st); code != 0 {
			t.Fatalf("poststop exited %d: %s\nhook log:\n%s", code, stderr, e.hookLog())
		}
		if testnet.HasFence(rulesIn(t, ns.Netns)) {
			t.Errorf("poststop left the fence")
		}
	})

	t.Run("strict", func(t *testing.T) {
		e := newEnv(t, lab, "nftables", "strict: true\n")
		c := startIn(t, ns.Netns)
		st := *c.state()
		st.Bundle = fifoBundle(t)
		code, stderr := runBinWithin(t, 10*time.Second, e.cfgPath, "create", st)
		if code != 1 || !strings.Contains(stderr, "a FIFO") {
			t.Errorf("strict create with a FIFO config.json: exit %d, stderr %q; want 1 and the reason", code, stderr)
		}
	})

	t.Run("config file", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "config.yaml")
		if err := unix.Mkfifo(cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		c := startIn(t, ns.Netns)
		code, stderr := runBinWithin(t, 10*time.Second, cfg, "create", *c.state())
		if code != 2 || !strings.Contains(stderr, "a FIFO") {
			t.Errorf("create with a FIFO config file: exit %d, stderr %q; want 2 and the reason", code, stderr)
		}
	})
}
