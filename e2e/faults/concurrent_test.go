// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// concurrentRounds is how many times two containers of one namespace are
// created, and then stopped, at once, per backend.
const concurrentRounds = 100

// Two containers of one namespace (a pod) created at once and stopped at
// once: both are fenced by one fence and owned by one record, and when both
// are gone the fence, the record and the index are gone too.
func TestConcurrentPod(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			var bad int
			for i := range concurrentRounds {
				ns := testnet.NewNetns(t)
				pair := []*container{startIn(t, ns), startIn(t, ns)}
				codes := e.both("create", pair, (*container).state)
				if codes[0] != 0 || codes[1] != 0 {
					t.Fatalf("round %d: concurrent creates exited %v", i, codes)
				}
				l := e.look(ns)
				owners := e.owners(ns)
				if !l.fence || !l.record || l.incomplete || owners != 2 {
					bad++
					t.Errorf("round %d after both creates: %+v with %d owners; want a fence and a complete record of 2", i, l, owners)
				}
				for _, c := range pair {
					c.kill()
				}
				codes = e.both("poststop", pair, (*container).stopped)
				if codes[0] != 0 || codes[1] != 0 {
					t.Fatalf("round %d: concurrent poststops exited %v", i, codes)
				}
				if l := e.look(ns); l.fence || l.record || l.tmp > 0 {
					bad++
					t.Errorf("round %d after both poststops: %+v, want nothing", i, l)
				}
				if f := e.stateFiles(); len(f) > 0 {
					bad++
					t.Errorf("round %d: the state directory holds %v", i, f)
				}
			}
			t.Logf("%s: %d rounds of two containers of one namespace created and stopped at once: %d went wrong", b, concurrentRounds, bad)
		})
	}
}

// both runs one stage for two containers at once.
func (e *env) both(stage string, pair []*container, state func(*container) specs.State) [2]int {
	var codes [2]int
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range pair {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = e.exitCode(stage, state(c))
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

// owners counts the owners in the namespace's record.
func (e *env) owners(ns *testnet.Netns) int {
	e.t.Helper()
	id, err := netns.Stat(ns.Path)
	if err != nil {
		e.t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(e.stateDir, id.Key()+".json"))
	if err != nil {
		return 0
	}
	var r struct {
		Owners []json.RawMessage `json:"owners"`
	}
	if json.Unmarshal(data, &r) != nil {
		return -1
	}
	return len(r.Owners)
}
