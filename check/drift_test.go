// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// A fence made under an older config is reported, with the command that
// brings it to the current one.
func TestDriftItems(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the state directory must be root's")
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	before := mustParse(t, "proxies: [198.51.100.1:3128]\nstateDir: "+stateDir+"\n")
	after := mustParse(t, "proxies: [198.51.100.1:3128]\nallow: [{cidr: 10.0.0.0/8}]\nstateDir: "+stateDir+"\n")
	store, err := records.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := before.Decide(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &records.Record{Netns: netns.ID{Dev: 4, Ino: 4026531999}, Backend: config.BackendNftables, Digest: d.Policy.Digest(),
		Policy: d.Policy, Narrowing: &d.Narrowing, LogID: "web", Owners: []records.Owner{{ID: "web", Pid: -1}}}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	if items := driftItems(before); len(items) != 0 {
		t.Errorf("a fence at the config: %+v", items)
	}
	items := driftItems(after)
	if len(items) != 1 || items[0].Status != Warn || !strings.Contains(items[0].Detail, "web") || !strings.Contains(items[0].Fix, "bypass-hook apply") {
		t.Errorf("a fence behind the config: %+v", items)
	}
}
