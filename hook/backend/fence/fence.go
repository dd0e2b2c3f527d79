// SPDX-License-Identifier: Apache-2.0

// Package fence is what the backends share about a fence: what one reading
// of a namespace shows of it (Seen), when it is whole, the digest of its
// rules, and the errors the hook acts on. It is apart from package backend
// (the interface and the registry) so that each backend can use it without
// importing the others.
package fence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

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
	// Counters holds, per family, the packets each of the fence's rules
	// matched, in install order, when the reading already had them (as
	// Backend.Counters returns them); nil when it did not, or when the
	// chain holds a rule not of ours. It spares a caller that wants both
	// a second reading of the namespace.
	Counters map[rules.Family][]uint64
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
			if !strings.HasPrefix(want[fam], DigestForm) {
				return false, "the record's digest of the rules was taken by an older bypass-hook, in another form, so the rules cannot be checked against it; the next container of this namespace, or `bypass-hook monitor --repair`, installs the fence again and records a new one"
			}
		}
		return false, "the " + strings.Join(changed, " and ") + " rules differ from those installed (a rule added, changed or removed)"
	}
	return true, ""
}

// DigestForm tags the digests of this form: the rules as the kernel
// holds them, every expression with its attributes (nf_tables), or
// iptables-save's lines (legacy iptables). Digests an older bypass-hook
// recorded have no tag, and Whole says so rather than "changed".
const DigestForm = "2:"

// Digest is the hex SHA-256 of lines, one per rule, in order, tagged.
func Digest(lines []string) string {
	d := NewDigester()
	for _, l := range lines {
		d.Add([]byte(l))
	}
	return d.Sum()
}

// Digester takes the Digest of lines given one at a time, for a reader
// that renders each rule's line into one buffer rather than keeping them.
type Digester struct{ h hash.Hash }

// NewDigester starts a Digest.
func NewDigester() Digester { return Digester{sha256.New()} }

// Add adds one rule's line.
func (d Digester) Add(line []byte) {
	d.h.Write(line)
	d.h.Write([]byte{'\n'})
}

// Sum is the Digest of the lines added.
func (d Digester) Sum() string {
	var sum [sha256.Size]byte
	return DigestForm + hex.EncodeToString(d.h.Sum(sum[:0]))
}

// ErrMissingFeature means the kernel (or the tools) lack a match or target
// the rules use: conntrack, LOG, NFLOG, limit. Only this error makes the hook
// try again with fewer optional features; any other fails the install.
var ErrMissingFeature = errors.New("the kernel lacks a match or target the rules use")

// ErrLockTimeout means another program held the xtables lock for longer
// than the hook waits. Trying a smaller rule set would not help.
var ErrLockTimeout = errors.New("the xtables lock was not free in time")

// NftErr adds what to do to the errors a kernel without nf_tables, or
// without a piece the rules need, gives on a netlink request.
func NftErr(err error) error {
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w (the kernel has no nf_tables: use backend: iptables)", err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: %w (a table, chain or expression the rules need is missing from the kernel)", ErrMissingFeature, err)
	}
	return err
}
