// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// One deadline from the stage's start governs every wait: with the
// namespace's record lock held by another process for good, create fails
// with its own error within hook.StageBudget, before a runtime's 10 s hook
// timeout would kill it (the lock alone once waited 30 s).
func TestStageDeadlineBeforeRuntimeTimeout(t *testing.T) {
	lab := testnet.NewLab(t)
	ns := lab.AddClient(t)
	e := newEnv(t, lab, "nftables", "")
	c := startIn(t, ns.Netns)
	id := nsOf(t, ns.Netns).ID
	if err := os.MkdirAll(e.cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(filepath.Join(e.cfg.StateDir, id.Key()+".lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, stderr := runBinWithin(t, 10*time.Second, e.cfgPath, "create", *c.state())
	took := time.Since(start)
	t.Logf("create with the record lock held elsewhere: exit %d after %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if code != 1 || !strings.Contains(stderr, "record lock") {
		t.Errorf("exit %d, stderr %q; want 1 and the record lock named", code, stderr)
	}
	if took > hook.StageBudget+time.Second {
		t.Errorf("create gave up after %s, past its budget of %s", took, hook.StageBudget)
	}
}
