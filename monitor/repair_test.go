// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// fakeBackend sees no fence anywhere (so every fence is "not whole") and
// notes where Install was asked to put one.
type fakeBackend struct {
	mu        sync.Mutex
	installed []netns.Handle
}

func (f *fakeBackend) Name() string { return config.BackendIptables }
func (f *fakeBackend) Install(ns netns.Handle, _ rules.RuleSet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installed = append(f.installed, ns)
	return nil
}
func (f *fakeBackend) Inspect(netns.Handle) (backend.Seen, error) { return backend.Seen{}, nil }
func (f *fakeBackend) Remove(netns.Handle) error                  { return nil }
func (f *fakeBackend) Counters(netns.Handle) (map[rules.Family][]uint64, error) {
	return nil, nil
}

// monitor --repair puts a fence back only as create would: through the
// namespace held and checked to be the record's, never into the host's.
// A record that names the host's namespace (crafted, or its pid reused by
// a host process) is refused.
func TestRepairRefusesTheHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: identifying the host's namespace needs root")
	}
	// The monitor's own namespace, which is the host's here: the hook
	// refuses both.
	host, err := netns.Stat("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeBackend{}
	logger, hook := test.NewNullLogger()
	store := &records.Store{Dir: t.TempDir()}
	m := newMonitor(Options{Config: testConfig(t, config.LogNflog), Out: &syncBuffer{}, Log: logger, Repair: true,
		NewBackend: func(string) (backend.Backend, error) { return fake, nil }}, store)
	rec := testrecord.New(1, idA, config.ModeEnforce, config.LogNflog, idA)
	rec.Netns, rec.Paths = host, []string{"/proc/self/ns/net"}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	_, why, repaired := m.confirm(rec.Netns.Key())
	if why == "" {
		t.Fatal("the fake backend's empty reading should make the fence not whole")
	}
	if repaired || len(fake.installed) > 0 {
		t.Fatalf("--repair installed a fence in the host's namespace: %+v", fake.installed)
	}
	found := false
	for _, e := range hook.AllEntries() {
		found = found || strings.Contains(e.Message, "host's network namespace")
	}
	if !found {
		t.Errorf("no error saying the record names the host's namespace; log: %v", hook.AllEntries())
	}
}
