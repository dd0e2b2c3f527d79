// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
)

// RecentPerFence is how many of a fence's last attempts the monitor keeps
// for `bypass-hook status`: enough to see who tries, bounded so that a
// busy fence costs no more than a quiet one.
const RecentPerFence = 10

// AttemptsPath is where the monitor's HTTP listener serves the recent
// attempts: a JSON list of events, oldest first; ?netns=NETNS keeps one
// fence's (netns as events and status name it).
const AttemptsPath = "/attempts"

// recentAttempts keeps the last RecentPerFence events of each fence, by
// the namespace the event names. Only the monitor sees the process behind
// an attempt, so `status` asks it for them.
type recentAttempts struct {
	mu      sync.Mutex
	byNetns map[string]*ring
}

// ring holds a fence's last events; next is where the next one goes once
// it is full.
type ring struct {
	evs  []Event
	next int
}

func newRecentAttempts() *recentAttempts {
	return &recentAttempts{byNetns: map[string]*ring{}}
}

// add keeps ev as its fence's latest; an event of no known fence (no
// netns) has nowhere to go and is not kept.
func (r *recentAttempts) add(ev Event) {
	if ev.Netns == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rg := r.byNetns[ev.Netns]
	if rg == nil {
		rg = &ring{evs: make([]Event, 0, RecentPerFence)}
		r.byNetns[ev.Netns] = rg
	}
	if len(rg.evs) < RecentPerFence {
		rg.evs = append(rg.evs, ev)
		return
	}
	rg.evs[rg.next] = ev
	rg.next = (rg.next + 1) % RecentPerFence
}

// list is the kept events of the fence of netns, or of all fences for "",
// oldest first.
func (r *recentAttempts) list(netns string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []Event{}
	for key, rg := range r.byNetns {
		if netns == "" || key == netns {
			out = append(out, rg.evs[rg.next:]...)
			out = append(out, rg.evs[:rg.next]...)
		}
	}
	slices.SortStableFunc(out, func(a, b Event) int { return a.Time.Compare(b.Time) })
	return out
}

// keep drops the events of every namespace known says is not a fence's
// any more.
func (r *recentAttempts) keep(known map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.byNetns {
		if !known[key] {
			delete(r.byNetns, key)
		}
	}
}

// drop forgets the events of netns: its fence went, and a namespace made
// later may get its inode number, and so its name.
func (r *recentAttempts) drop(netns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byNetns, netns)
}

// forgetRecent keeps the recent attempts of live fences only: a line of a
// fence gone, read late, may have made a ring again after markGone dropped
// it.
func (m *Monitor) forgetRecent() {
	known := map[string]bool{}
	m.mu.Lock()
	for _, f := range m.fences {
		known[f.rec.Netns.String()] = true
	}
	m.mu.Unlock()
	m.recent.keep(known)
}

// AttemptsHandler serves the recent attempts of every fence (or of the
// one ?netns= names) as a JSON list of events, oldest first.
func (m *Monitor) AttemptsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "bypass-hook monitor: "+AttemptsPath+" answers GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.Encode(m.recent.list(r.URL.Query().Get("netns")))
	})
}
