// SPDX-License-Identifier: Apache-2.0

// Package backend puts a rule set into a network namespace and takes it out
// again: the Backend interface, its registry, and one file per backend
// (iptables, nftables).
package backend

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"

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

// Seen is what one reading of a namespace's rules shows of a fence.
//
// A fence is whole when its chain holds the rules that were installed and
// nothing is put in front of it: with iptables, OUTPUT (a filter chain on
// the output hook at priority 0, after nat) has the jump to the chain as
// its first rule; with nftables, the table holds our one chain as
// installed and nothing else (an accept in a base chain of another table
// ends only that chain; a drop there can only refuse more); in both, the
// table has no flags (dormant). It vouches for the fence's own objects: a
// chain of another table that rewrites packets after the fence passed them
// is not looked at.
type Seen struct {
	// Present: the fence is there (iptables: the chain and a jump to it,
	// both families; nftables: the table and its hooked chain).
	Present bool
	// Problem says what keeps a present fence from being whole apart from
	// its rules: something in front of it, a chain or rule not of ours.
	// Empty when there is nothing of the kind.
	Problem string
	// Rules holds, per family, a digest of the fence's rules as the kernel
	// has them (counters left out): what Whole compares with the digests
	// taken right after the install.
	Rules map[rules.Family]string
}

// Whole reports whether s is the fence whose rules had the digests want
// right after it was installed; if not, why not, in words for a log.
func (s Seen) Whole(want map[rules.Family]string) (bool, string) {
	switch {
	case !s.Present:
		return false, "the fence is gone"
	case s.Problem != "":
		return false, s.Problem
	case len(want) == 0:
		return false, "the record has no digest of the rules (it was written by an older bypass-hook), so they cannot be checked"
	}
	var changed []string
	for _, fam := range rules.Families {
		if s.Rules[fam] != want[fam] {
			changed = append(changed, fam.String())
		}
	}
	if len(changed) > 0 {
		for _, fam := range rules.Families {
			if !strings.HasPrefix(want[fam], digestForm) {
				return false, "the record's digest of the rules was taken by an older bypass-hook, in another form, so the rules cannot be checked against it; the next container of this namespace, or `bypass-hook monitor --repair`, installs the fence again and records a new one"
			}
		}
		return false, "the " + strings.Join(changed, " and ") + " rules differ from those installed (a rule added, changed or removed)"
	}
	return true, ""
}

// ReadBack returns the digests of the rules that Install has just put into
// ns, as the kernel holds them: from the install's own answer where the
// backend has one (nftables: the kernel's echo of each rule it stored), else
// read back with Inspect.
func ReadBack(b Backend, ns netns.Handle) (map[rules.Family]string, error) {
	type echoed interface {
		installedDigests(path string) (map[rules.Family]string, bool)
	}
	if e, ok := b.(echoed); ok {
		if sums, ok := e.installedDigests(ns.Path); ok {
			return sums, nil
		}
	}
	seen, err := b.Inspect(ns)
	return seen.Rules, err
}

// digestForm tags the digests of this form: the rules as the kernel
// holds them, every expression with its attributes (nf_tables), or
// iptables-save's lines (legacy iptables). Digests an older bypass-hook
// recorded have no tag, and Whole says so rather than "changed".
const digestForm = "2:"

// digest is the hex SHA-256 of lines, one per rule, in order, tagged.
func digest(lines []string) string {
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return digestForm + hex.EncodeToString(h.Sum(nil))
}

// ErrMissingFeature means the kernel (or the tools) lack a match or target
// the rules use: conntrack, LOG, NFLOG, limit. Only this error makes the hook
// try again with fewer optional features; any other fails the install.
var ErrMissingFeature = errors.New("the kernel lacks a match or target the rules use")

// ErrLockTimeout means another program held the xtables lock for longer
// than the hook waits. Trying a smaller rule set would not help.
var ErrLockTimeout = errors.New("the xtables lock was not free in time")

// backends maps the config's backend names to constructors. A name that is
// not here (a typo the config check missed, a build without it) is a clear
// error; the perrule build replaces the iptables entry.
var backends = map[string]func() (Backend, error){
	config.BackendIptables: func() (Backend, error) { return NewIptables() },
	config.BackendNftables: func() (Backend, error) { return &Nftables{}, nil },
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
