// SPDX-License-Identifier: Apache-2.0

// Package backend is what the hook asks of a netfilter backend: the Backend
// interface, the registry of backends by the config's names, and auto's
// choice between them. The backends are packages of their own (nftables,
// iptables); what they share about a fence (Seen, digests, errors) is in
// package fence, which this package names again for its callers.
package backend

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/fence"
	"github.com/bypass-hook/bypass-hook/hook/backend/iptables"
	"github.com/bypass-hook/bypass-hook/hook/backend/nftables"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Backend puts a fence into a namespace and takes it out again.
type Backend interface {
	Name() string
	// Install makes the namespace's fence exactly rs, atomically: either
	// all of it is active or, on error, the namespace is as it was.
	Install(ns netns.Handle, rs rules.RuleSet) error
	// Inspect reads the namespace's rules once and says what it sees of
	// the fence (see Seen).
	Inspect(ns netns.Handle) (Seen, error)
	// Remove takes the fence out; what is already gone is not an error.
	Remove(ns netns.Handle) error
	// Counters returns the packets each rule matched, per family, in the
	// order of the installed rules.
	Counters(ns netns.Handle) (map[rules.Family][]uint64, error)
}

// Seen is what one reading of a namespace's rules shows of a fence; see
// fence.Seen.
type Seen = fence.Seen

// ErrMissingFeature and ErrLockTimeout: see package fence.
var (
	ErrMissingFeature = fence.ErrMissingFeature
	ErrLockTimeout    = fence.ErrLockTimeout
)

// ReadBack returns the digests of the rules that Install has just put into
// ns, as the kernel holds them: from the install's own answer where the
// backend has one (nftables: the kernel's echo of each rule it stored), else
// read back with Inspect.
func ReadBack(b Backend, ns netns.Handle) (map[rules.Family]string, error) {
	type echoed interface {
		InstalledDigests(path string) (map[rules.Family]string, bool)
	}
	if e, ok := b.(echoed); ok {
		if sums, ok := e.InstalledDigests(ns.Path); ok {
			return sums, nil
		}
	}
	seen, err := b.Inspect(ns)
	return seen.Rules, err
}

// backends maps the config's backend names to constructors. A name that is
// not here (a typo the config check missed, a build without it) is a clear
// error; the perrule build replaces the iptables entry.
var backends = map[string]func() (Backend, error){
	config.BackendIptables: func() (Backend, error) { return iptables.New() },
	config.BackendNftables: func() (Backend, error) { return &nftables.Nftables{}, nil },
}

// Names lists the backends built in, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(backends))
}

// New returns the backend the config names.
func New(name string) (Backend, error) {
	mk, ok := backends[name]
	if !ok {
		return nil, fmt.Errorf("backend %q is not available in this build", name)
	}
	return mk()
}

// KernelLogHidesNamespaces reports whether the host's
// net.netfilter.nf_log_all_netns is 0: the kernel then drops the LOG lines of
// every namespace but the host's, so log.target kernel shows nothing of a
// container. Unreadable counts as no: the check is for a warning only.
func KernelLogHidesNamespaces() bool {
	data, err := os.ReadFile("/proc/sys/net/netfilter/nf_log_all_netns")
	return err == nil && strings.TrimSpace(string(data)) == "0"
}

// Reading is one look at the fence of a recorded namespace: the namespace,
// the backend that reads it, what it saw, and whether that is the fence
// installed there.
type Reading struct {
	NS       netns.Handle
	ByHandle bool    // NS was reached by the namespace's file handle and is held until Close
	Backend  Backend // nil when it could not be made
	Seen     Seen
	Whole    bool
	Why      string // why it is not whole

	closeNs func()
}

// Close lets go of the namespace, which Look holds when it reached it by
// its file handle: the descriptor would keep it alive.
func (r Reading) Close() {
	if r.closeNs != nil {
		r.closeNs()
	}
}

// ErrNetnsGone means the namespace a record names is gone.
var ErrNetnsGone = errors.New("the network namespace is gone")

// Look finds the namespace id (netns.Find, with hints, where fh does not
// say the path leads to another namespace that has its number now; else
// by its file handle fh, which reaches one that only a thread or a socket
// holds: then call Close when done with NS), makes the backend
// named, inspects the fence there and checks it against the digests want
// recorded at its install: what status, check and the monitor each do for
// a record. On an error, the fields it got to are set: NS once the
// namespace is found, Backend once it is made.
func Look(id netns.ID, fh string, hints []string, name string, want map[rules.Family]string, newBackend func(string) (Backend, error)) (Reading, error) {
	var r Reading
	ns, found := netns.Find(id, hints...)
	if found && netns.Recycled(ns, fh) {
		// The path leads to another namespace that was given the number
		// of the record's, freed: its rules are not this fence's (read
		// there, the fence was "gone", and the monitor reported it not
		// whole). The handle says whether the record's is held anywhere.
		found = false
	}
	if !found {
		if ns, r.closeNs, found = netns.OpenHandle(id, fh); !found {
			return r, ErrNetnsGone
		}
		r.ByHandle = true
	}
	r.NS = ns
	b, err := newBackend(name)
	if err != nil {
		return r, err
	}
	r.Backend = b
	if r.Seen, err = b.Inspect(ns); err != nil {
		return r, err
	}
	r.Whole, r.Why = r.Seen.Whole(want)
	return r, nil
}
