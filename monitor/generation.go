// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"hash/fnv"
	"maps"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/nfnl"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/fdlimit"
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
// small part of that. Only Run's goroutine (through resync and markGone)
// uses it.
type generations struct {
	whole map[string]readWhole // by namespace key
	pass  uint64               // resyncs so far
	// kept are the sockets on which the generations are read, one in each
	// nftables fence's namespace, by namespace key: making a socket in a
	// namespace (finding it, joining it and coming back) costs many times
	// the request. A socket keeps its namespace alive, as an NFLOG socket
	// does: it is closed when the fence goes or is no longer read, and
	// made again, through a path to the namespace, at the fence's turn of
	// a full reading, so that a namespace that only it holds is let go
	// then at the latest. netns.InUse passes over the monitor's netlink
	// sockets.
	kept map[string]*nfnl.Conn
}

// read reads the nf_tables generation of f's namespace; ok is false for a
// fence it says nothing of: one of the iptables backend (legacy iptables
// changes no generation), or a namespace not reached. fresh makes the
// socket again through a path to the namespace.
func (g *generations) read(f *fence, fresh bool) (gen uint32, ok bool) {
	rec := f.rec
	if rec.Backend != config.BackendNftables {
		// A namespace fenced again with iptables under the same key lets
		// go of the socket kept while it was nftables: it would hold the
		// namespace for as long as the record lives.
		g.drop(f.key)
		return 0, false
	}
	c := g.kept[f.key]
	if c != nil && fresh {
		g.drop(f.key)
		c = nil
	}
	if c == nil {
		// Held while the socket is made, and checked to be the record's
		// (number and file handle): a /proc/PID path could lead to another
		// namespace by then, and the socket stays in the one it was made
		// in. Opened by the record's handle too (a namespace that only a
		// thread or a socket holds), but not at the fence's fresh turn:
		// the socket just closed may have been all that held it, and the
		// handle would open it again.
		open := netns.OpenKnown
		if fresh {
			open = netns.OpenByPath
		}
		ns, closeNs, found := open(rec.Netns, rec.NsHandle, rec.Hints())
		if !found {
			return 0, false
		}
		var err error
		c, err = nfnl.OpenKept(ns.Path)
		closeNs()
		if err != nil {
			return 0, false
		}
		if len(g.kept) >= fdlimit.Quarter() {
			// Past the monitor's share of descriptors: made for this
			// read only, as the rest must not fail for want of one.
			defer c.Close()
		} else {
			if g.kept == nil {
				g.kept = map[string]*nfnl.Conn{}
			}
			g.kept[f.key] = c
		}
	}
	gen, err := c.Generation()
	if err != nil {
		g.drop(f.key)
		return 0, false
	}
	return gen, true
}

// drop closes the socket kept in the namespace of key, if any.
func (g *generations) drop(key string) {
	if c := g.kept[key]; c != nil {
		c.Close()
		delete(g.kept, key)
	}
}

// keepOnly closes the sockets kept in namespaces not in read.
func (g *generations) keepOnly(read map[string]bool) {
	for key := range g.kept {
		if !read[key] {
			g.drop(key)
		}
	}
}

// unchanged says whether the fence of key, with record rec and generation
// gen now, was read whole at that same generation against the same
// digests, and it is not the fence's turn to be read in full.
func (g *generations) unchanged(key string, rec *records.Record, gen uint32, resync time.Duration) bool {
	w, ok := g.whole[key]
	if !ok || w.gen != gen || !maps.Equal(w.digests, rec.RulesDigest) {
		return false
	}
	return !g.fullTurn(key, resync)
}

// fullTurn says whether this resync is the fence of key's turn to be read
// in full.
func (g *generations) fullTurn(key string, resync time.Duration) bool {
	turns := fullReadTurns(resync)
	return turnOf(key, turns) == g.pass%turns
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
