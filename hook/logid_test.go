// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// A record whose owners all died without a poststop may meet a container
// that is not theirs: a new container in a namespace that a bind mount
// kept, or a new namespace that got the dead one's inode number (the
// kernel hands the lowest free one out again). The newcomer's attempts
// must be logged and reported under its own id, not under the dead
// container's, which may be another tenant's.
func TestAbandonedFenceTakesTheNewcomersLogID(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNetns(t)
	e := newEnv(t, nil, backends(t)[0], "proxies: ['198.51.100.1:3128']\n")
	dead := startIn(t, ns)
	if _, err := e.create(dead.state()); err != nil {
		t.Fatal(err)
	}
	dead.kill() // no poststop
	newcomer := startIn(t, ns)
	if _, err := e.create(newcomer.state()); err != nil {
		t.Fatal(err)
	}
	recs := e.records()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	if recs[0].LogID != newcomer.id {
		t.Errorf("the fence logs as %s, a container whose process is gone; want the newcomer %s", recs[0].LogID, newcomer.id)
	}
	if rules := rulesIn(t, ns); !strings.Contains(rules, newcomer.id[:12]) || strings.Contains(rules, dead.id[:12]) {
		t.Errorf("the rules' log prefix does not name the newcomer %s:\n%s", newcomer.id, rules)
	}
}
