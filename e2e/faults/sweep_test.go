// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// killAt is the moment of kill i of n, across from-to: evenly spaced for odd
// i, at random for even i, so that a sweep covers the whole span and may
// land anywhere in it.
func killAt(i, n int, from, to time.Duration) time.Duration {
	if i%2 == 1 {
		return from + (to-from)*time.Duration(i)/time.Duration(n)
	}
	return from + time.Duration(rand.Int64N(int64(to-from)))
}

// fullSpan runs once five times and returns the median of what it returns:
// how long the part a sweep kills takes here when nothing kills it.
func fullSpan(once func() time.Duration) time.Duration {
	var took []time.Duration
	for range 5 {
		took = append(took, once())
	}
	return median(took)
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// tally counts what the kills of one sweep left behind.
type tally struct {
	killed, unrecorded, incomplete, recorded, empty int
}

// count looks at what a process killed after d (what names it) left in ns
// and counts it; a fence that no record names fails the test.
func (k *tally) count(t *testing.T, e *env, ns *testnet.Netns, what string, d time.Duration) left {
	t.Helper()
	k.killed++
	l := e.look(ns)
	switch {
	case l.unrecorded():
		k.unrecorded++
		t.Errorf("%s killed after %s: the namespace has a fence that no record names", what, d)
	case l.incomplete:
		k.incomplete++
	case l.record:
		k.recorded++
	default:
		k.empty++
	}
	return l
}

func (k tally) String() string {
	return fmt.Sprintf("%d left unrecorded rules, %d an incomplete record, %d a complete record, %d nothing", k.unrecorded, k.incomplete, k.recorded, k.empty)
}

// swept fails the test when fewer than least of the n kills came before
// the end of what they killed: the sweep did not sweep.
func (k tally) swept(t *testing.T, what string, n, least int) {
	t.Helper()
	if k.killed < least {
		t.Errorf("only %d of %d kills came before the %s's end: the sweep did not sweep", k.killed, n, what)
	}
}
