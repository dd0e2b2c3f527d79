// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"hash/fnv"
	"maps"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/nftables"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// fullReadEvery is how often every fence is read in full even when its
// namespace's nf_tables generation says nothing changed: a safety net,
// spread over the resyncs in between.
const fullReadEvery = 5 * time.Minute

// readWhole is what the last check of one nftables fence found whole: the
// namespace's nf_tables generation, read before the fence, and the rule
// digests of the record it was checked against.
type readWhole struct {
	gen     uint32
	digests map[rules.Family]string
}

// generations lets checkWhole skip a fence whose namespace's ruleset has
// not changed since it was last read whole. Reading every fence's chains,
// tables and rules at every resync is what a node of many fences pays
// most for while nothing happens; one generation request per fence is a
// small part of that. Only Run's goroutine (through resync) uses it.
type generations struct {
	whole map[string]readWhole // by namespace key
	pass  uint64               // resyncs so far
}

// generation reads the nf_tables generation of rec's namespace; ok is false
// for a fence it says nothing of: one of the iptables backend (legacy
// iptables changes no generation), or a namespace not reached.
func generation(rec *records.Record) (gen uint32, ok bool) {
	if rec.Backend != config.BackendNftables {
		return 0, false
	}
	ns, closeNs, found := netns.OpenKnown(rec.Netns, rec.NsHandle, rec.Hints())
	if !found {
		return 0, false
	}
	defer closeNs()
	gen, err := nftables.Generation(ns)
	return gen, err == nil
}

// unchanged says whether the fence of key, with record rec and generation
// gen now, was read whole at that same generation against the same
// digests, and it is not the fence's turn to be read in full.
func (g *generations) unchanged(key string, rec *records.Record, gen uint32, resync time.Duration) bool {
	w, ok := g.whole[key]
	if !ok || w.gen != gen || !maps.Equal(w.digests, rec.RulesDigest) {
		return false
	}
	turns := fullReadTurns(resync)
	return turnOf(key, turns) != g.pass%turns
}

// fullReadTurns is how many resyncs go round every fence's full reading.
func fullReadTurns(resync time.Duration) uint64 {
	return uint64(max(1, fullReadEvery/max(resync, time.Second)))
}

// turnOf is the resync, modulo turns, at which the fence of key is read in
// full: spread by key, so that each resync reads a share of them.
func turnOf(key string, turns uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64() % turns
}
