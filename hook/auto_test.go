// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// backend: auto fences a fresh namespace with nftables where the kernel has
// nf_tables, and its record says so; a second container of the namespace
// joins that fence. A namespace that iptables fenced first keeps iptables
// for a container whose config says auto: a join uses the recorded backend.
func TestBackendAuto(t *testing.T) {
	testnet.RequireRoot(t)
	probe := testnet.NewNetns(t)
	if err := backend.NftablesAvailable(probe.Path); err != nil {
		t.Skipf("skipping: this kernel has no nf_tables, so auto would rightly pick iptables: %v", err)
	}
	const proxies = "proxies: ['198.51.100.1:3128', '[2001:db8:1::1]:3128']\n"

	t.Run("fresh namespace", func(t *testing.T) {
		ns := testnet.NewNetns(t)
		e := newEnv(t, nil, config.BackendAuto, proxies)
		c1, c2 := startIn(t, ns), startIn(t, ns)
		empty := rulesIn(t, ns)
		res, err := e.create(c1.state())
		if err != nil {
			t.Fatal(err)
		}
		if res.Backend != config.BackendNftables {
			t.Errorf("create reports backend %q; want nftables", res.Backend)
		}
		if recs := e.records(); len(recs) != 1 || recs[0].Backend != config.BackendNftables {
			t.Fatalf("records: %+v; want one of backend nftables", recs)
		}
		if now := rulesIn(t, ns); !strings.Contains(now, "table inet bypass_hook") || strings.Contains(now, "BYPASS-HOOK") {
			t.Errorf("rules after create under auto:\n%s", now)
		}
		res, err = e.create(c2.state())
		if err != nil || res.Backend != config.BackendNftables || !strings.Contains(res.Action, "joined") {
			t.Fatalf("second container: %+v, %v; want it to join the nftables fence", res, err)
		}
		for _, c := range []*container{c1, c2} {
			if _, err := e.poststop(c.id); err != nil {
				t.Fatal(err)
			}
		}
		if now := rulesIn(t, ns); now != empty {
			t.Errorf("poststop left rules:\n%s", testnet.Diff(empty, now))
		}
	})

	t.Run("join an iptables fence", func(t *testing.T) {
		ns := testnet.NewNetns(t)
		e := newEnv(t, nil, config.BackendAuto, proxies)
		c1, c2 := startIn(t, ns), startIn(t, ns)
		empty := rulesIn(t, ns)
		ipt := *e.cfg
		ipt.Backend = config.BackendIptables
		if _, err := hook.New(&ipt, e.log).Create(c1.state()); err != nil {
			t.Fatal(err)
		}
		fenced := rulesIn(t, ns)
		res, err := e.create(c2.state())
		if err != nil || res.Backend != config.BackendIptables || !strings.Contains(res.Action, "joined") {
			t.Fatalf("container under auto in a namespace iptables fenced: %+v, %v; want it to join with iptables", res, err)
		}
		if now := rulesIn(t, ns); now != fenced {
			t.Errorf("the join changed the rules:\n%s", testnet.Diff(fenced, now))
		}
		if recs := e.records(); len(recs) != 1 || recs[0].Backend != config.BackendIptables || len(recs[0].Owners) != 2 {
			t.Fatalf("records: %+v; want one of backend iptables with two owners", recs)
		}
		for _, c := range []*container{c1, c2} {
			if _, err := e.poststop(c.id); err != nil {
				t.Fatal(err)
			}
		}
		if now := rulesIn(t, ns); now != empty {
			t.Errorf("poststop left rules:\n%s", testnet.Diff(empty, now))
		}
	})
}
