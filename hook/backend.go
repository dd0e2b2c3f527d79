package hook

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/bypass-hook/bypass-hook/config"
)

// RuleSet is the whole fence: the rules of each family.
type RuleSet map[Family][]Rule

// NewRuleSet builds the fence for both families (see Rules).
func NewRuleSet(p config.Policy, containerID string, feat Features) RuleSet {
	rs := RuleSet{}
	for _, fam := range Families {
		rs[fam] = Rules(p, containerID, fam, feat)
	}
	return rs
}

// Count is the number of rules in all families.
func (rs RuleSet) Count() int {
	n := 0
	for _, r := range rs {
		n += len(r)
	}
	return n
}

// Backend puts a fence into a namespace and takes it out again.
type Backend interface {
	Name() string
	// Install makes the namespace's fence exactly rs, atomically: either
	// all of it is active or, on error, the namespace is as it was.
	Install(ns Netns, rs RuleSet) error
	// Installed reports whether a fence of this backend is active in ns.
	Installed(ns Netns) (bool, error)
	// Remove takes the fence out; what is already gone is not an error.
	Remove(ns Netns) error
	// Counters returns the packets each rule matched, per family, in the
	// order of the installed rules.
	Counters(ns Netns) (map[Family][]uint64, error)
}

// ErrMissingFeature means the kernel (or the tools) lack a match or target
// the rules use: conntrack, LOG, NFLOG, limit. Only this error makes the hook
// try again with fewer optional features; any other fails the install.
var ErrMissingFeature = errors.New("the kernel lacks a match or target the rules use")

// ErrLockTimeout means another program held the xtables lock for longer
// than the hook waits. Trying a smaller rule set would not help.
var ErrLockTimeout = errors.New("the xtables lock was not free in time")

// backends maps the config's backend names to constructors. A backend that
// is not built in (nftables, before it exists) is a clear error.
var backends = map[string]func() (Backend, error){
	config.BackendIptables: func() (Backend, error) { return NewIptables() },
}

// BackendNames lists the backends built in, sorted.
func BackendNames() []string {
	return slices.Sorted(maps.Keys(backends))
}

// NewBackend returns the backend the config names.
func NewBackend(name string) (Backend, error) {
	mk, ok := backends[name]
	if !ok {
		return nil, fmt.Errorf("backend %q is not available in this build", name)
	}
	return mk()
}
