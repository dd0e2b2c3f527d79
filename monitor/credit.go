// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"errors"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// A kernel log line says nothing of the namespace it came from: any
// process that can make a user and network namespace of its own can write
// a LOG rule with a fence's prefix and make lines of its choosing (the
// host's nf_log_all_netns=1 prints them all). So a line counts as a
// fence's only while the fence's own log rule for the line's protocol, in
// the fence's own namespace, has logged more packets than the monitor has
// taken lines for: the rules' counters are the credit, and a forger in
// another namespace cannot make them grow. Lines beyond the credit are
// dropped and counted (bypass_hook_kernel_lines_unverified_total). What
// is left to a forger is to swap a line of the protocol the container
// itself is logging at that moment for one of its own: NFLOG, whose
// messages come from the namespace's own socket, has no such gap.

// credit is how many kernel log lines each of a fence's log rules vouch
// for. It lives as long as the fence, across the fence's replacements by
// the same rules.
type credit struct {
	mu     sync.Mutex
	primed bool              // the counters were read when the fence was first followed
	logged map[string]uint64 // each log rule's counter at the last reading
	used   map[string]uint64 // lines taken, plus the counter at the first reading
	warned bool
}

// logRulesFor names the log rules that may have written a line of proto:
// the protocol's own, and the one for source-routed packets of any.
func logRulesFor(proto string) []string {
	switch proto {
	case "tcp", "udp":
		return []string{"log-" + proto, "log-source-route"}
	}
	return []string{"log-other", "log-source-route"}
}

// primeCredit reads f's counters when the monitor starts following it:
// what was logged before is not credit for lines to come. A fence whose
// counters cannot be read now is primed at its first line instead, with
// everything its rules logged since their install as credit.
// What it read is logged at debug level: a line dropped later as
// unverified is told from one whose attempt was counted before.
func (m *Monitor) primeCredit(f *fence, log logrus.FieldLogger) {
	c := f.credit
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.primed {
		return
	}
	n, err := m.opts.LoggedCount(f.rec)
	if err != nil {
		log.WithError(err).Debug("the fence's counters cannot be read yet; its first kernel log line reads them")
		return
	}
	c.logged, c.used, c.primed = n, clone(n), true
	log.WithField("logged", logRulesOnly(n)).Debug("kernel log credit primed: what the fence's log rules counted so far vouches for no line")
}

// logRulesOnly keeps the log rules' counters of n, for the log.
func logRulesOnly(n map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range n {
		if strings.HasPrefix(k, "log-") {
			out[k] = v
		}
	}
	return out
}

// vouch reports whether f's counters vouch for one more kernel log line
// of proto, and takes it from the credit if so. It reads the counters
// again when the credit is spent. The rules count a packet before they
// log it (nftables: limit, counter, log; iptables counts the rule's match
// before its target), so a line read is always counted by then. Each
// forged line costs one reading: a flood of them slows the monitor, as it
// would fill the kernel log anyway.
func (m *Monitor) vouch(f *fence, proto string) bool {
	c := f.credit
	c.mu.Lock()
	defer c.mu.Unlock()
	take := func() bool {
		for _, name := range logRulesFor(proto) {
			if c.used[name] < c.logged[name] {
				c.used[name]++
				return true
			}
		}
		return false
	}
	if take() {
		return true
	}
	n, err := m.opts.LoggedCount(f.rec)
	if err != nil {
		return false
	}
	if !c.primed {
		c.used, c.primed = map[string]uint64{}, true // everything logged since the install vouches
	}
	c.logged = n
	return take()
}

func clone(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// unverified counts a kernel log line with a fence's prefix that no
// fence's counters vouch for, and says so once per fence.
func (m *Monitor) unverified(fs []*fence, prefix string) {
	m.metrics.unverified.Inc()
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.rec.LogID)
	}
	m.opts.Log.WithFields(logrus.Fields{"prefix": prefix, "containers": ids}).Debug("a kernel log line with our prefix dropped: no live fence's counters vouch for it")
	for _, f := range fs {
		f.credit.mu.Lock()
		warn := !f.credit.warned
		f.credit.warned = true
		f.credit.mu.Unlock()
		if warn {
			m.opts.Log.WithFields(logrus.Fields{"container": f.rec.LogID, "netns": f.rec.Netns.String()}).
				Warn("kernel log lines with this fence's prefix that its own log rules did not write (their counters did not grow): a LOG rule in another namespace forges them; dropped and counted in bypass_hook_kernel_lines_unverified_total (log.target nflog cannot be forged)")
		}
	}
}

// readLogged reads, in the fence's own namespace, how many packets each of
// its rules has counted, by the rule's name.
func (m *Monitor) readLogged(rec *records.Record) (map[string]uint64, error) {
	ns, closeNs, ok := netns.OpenKnown(rec.Netns, rec.NsHandle, rec.Hints())
	if !ok {
		return nil, errors.New("the fence's namespace is gone: neither its file handle nor a path reaches it")
	}
	defer closeNs()
	b, err := m.opts.NewBackend(rec.Backend)
	if err != nil {
		return nil, err
	}
	counters, err := b.Counters(ns)
	if err != nil {
		return nil, err
	}
	byName, _ := rules.TallyCounters(rec.RuleNames, counters)
	return byName, nil
}
