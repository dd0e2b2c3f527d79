// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

func latePlugin(t *testing.T) (*Plugin, *config.Config, *test.Hook) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the state directory must be root's")
	}
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf("proxies: [198.51.100.1:3128]\nstateDir: %s\n", filepath.Join(dir, "state"))))
	if err != nil {
		t.Fatal(err)
	}
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	return &Plugin{log: logger, health: newHealth(), late: newLate()}, cfg, hook
}

// The list of unfenced containers is written by late-fencing passes and by
// StopContainer, from different goroutines: each write is whole, and the
// file always holds a list, never a torn one.
func TestSaveUnfencedConcurrent(t *testing.T) {
	p, cfg, hook := latePlugin(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("c-%d-%d", g, i)
				p.late.mu.Lock()
				p.late.unfenced[id] = records.Unfenced{ID: id, Reason: "test", Seen: time.Now()}
				p.late.mu.Unlock()
				p.saveUnfenced(cfg)
			}
		})
	}
	wg.Wait()
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Fatalf("a write of the unfenced list failed: %s %v", e.Message, e.Data)
		}
	}
	store, err := records.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := store.Unfenced()
	if err != nil || len(list) != 800 {
		t.Errorf("the unfenced list after all writes: %d entries, %v; want 800", len(list), err)
	}
}

// Two synchronizations' passes (a reconnect while the first still runs)
// take turns: the second starts once the first has ended.
func TestLatePassesDoNotOverlap(t *testing.T) {
	p, cfg, _ := latePlugin(t)
	var mu sync.Mutex
	running, most := 0, 0
	item := lateItem{Pod: &api.PodSandbox{}, Ctr: &api.Container{Id: "x"}, Cannot: "test"}
	slow := func() {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
	}
	p.late.testPass = slow
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { p.fenceLate(cfg, []lateItem{item}) })
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d late-fencing passes ran at once, want 1", most)
	}
}
