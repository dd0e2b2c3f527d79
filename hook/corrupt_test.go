// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// A corrupt record of another namespace never keeps a poststop from
// finding its own and taking the fence out; a poststop whose own record is
// corrupt says so instead of leaving the fence in silence.
func TestPoststopWithCorruptRecords(t *testing.T) {
	lab := testnet.NewLab(t)

	t.Run("another record corrupt", func(t *testing.T) {
		e := newEnv(t, lab, "nftables", "")
		ns := lab.AddClient(t)
		c := startIn(t, ns.Netns)
		if _, err := e.create(c.state()); err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(e.cfg.StateDir, "netns-4-4026539999.json")
		if err := os.WriteFile(bad, []byte(`{"netns":{"dev":4,"ino":40265`), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := e.poststop(c.id)
		if err != nil || res.Action != "fence removed" {
			t.Fatalf("poststop with another record corrupt: %+v, %v; want its fence removed", res, err)
		}
		if testnet.HasFence(rulesIn(t, ns.Netns)) {
			t.Error("the fence is still there")
		}
	})

	t.Run("its own record corrupt", func(t *testing.T) {
		e := newEnv(t, lab, "nftables", "")
		ns := lab.AddClient(t)
		c := startIn(t, ns.Netns)
		if _, err := e.create(c.state()); err != nil {
			t.Fatal(err)
		}
		recs, _ := filepath.Glob(filepath.Join(e.cfg.StateDir, "netns-*.json"))
		if len(recs) != 1 {
			t.Fatalf("records: %v", recs)
		}
		if err := os.WriteFile(recs[0], []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := e.poststop(c.id)
		if err == nil || !strings.Contains(err.Error(), "cannot be read") || !strings.Contains(err.Error(), recs[0]) {
			t.Fatalf("poststop with its own record corrupt: %+v, %v; want an error naming %s", res, err, recs[0])
		}
		t.Logf("poststop: %v", err)
	})
}
