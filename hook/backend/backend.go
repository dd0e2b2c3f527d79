// Package backend puts a rule set into a network namespace and takes it out
// again: the Backend interface, its registry, and one file per backend
// (iptables, nftables).
package backend

import (
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
	// Installed reports whether a fence of this backend is active in ns.
	Installed(ns netns.Handle) (bool, error)
	// Remove takes the fence out; what is already gone is not an error.
	Remove(ns netns.Handle) error
	// Counters returns the packets each rule matched, per family, in the
	// order of the installed rules.
	Counters(ns netns.Handle) (map[rules.Family][]uint64, error)
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
