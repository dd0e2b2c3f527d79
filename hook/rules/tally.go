// SPDX-License-Identifier: Apache-2.0

package rules

// Tally is what a fence's counters say about attempts to get past it.
type Tally struct {
	RefusedTCP   uint64 `json:"refusedTcp"`
	RefusedUDP   uint64 `json:"refusedUdp"`
	RefusedOther uint64 `json:"refusedOther"`
	// RefusedSourceRoute counts packets refused for a routing header or IP
	// options, whatever their protocol.
	RefusedSourceRoute uint64 `json:"refusedSourceRoute"`
	// Audited* count what audit mode let through that enforce mode would
	// have refused.
	AuditedTCP         uint64 `json:"auditedTcp"`
	AuditedUDP         uint64 `json:"auditedUdp"`
	AuditedOther       uint64 `json:"auditedOther"`
	AuditedSourceRoute uint64 `json:"auditedSourceRoute"`
	// Logged counts the packets the log rules wrote out: at most the
	// configured rate, so it may be less than the refusals.
	Logged uint64 `json:"logged"`
}

// TallyCounters adds up the counters of each rule by the rule's name, over
// both families, and sums them into a Tally. Counters beyond the names (or
// names beyond the counters) are ignored: the caller compares the lengths
// when it cares that the rules are what the record says.
func TallyCounters(names map[Family][]string, counters map[Family][]uint64) (byName map[string]uint64, t Tally) {
	byName = map[string]uint64{}
	for fam, ns := range names {
		for i, name := range ns {
			if i < len(counters[fam]) {
				byName[name] += counters[fam][i]
			}
		}
	}
	t = Tally{
		RefusedTCP:         byName["refuse-tcp"],
		RefusedUDP:         byName["refuse-udp"],
		RefusedOther:       byName["refuse-other"],
		RefusedSourceRoute: byName["refuse-source-route"],
		AuditedTCP:         byName["audit-tcp"],
		AuditedUDP:         byName["audit-udp"],
		AuditedOther:       byName["audit-other"],
		AuditedSourceRoute: byName["audit-source-route"],
		Logged:             byName["log-tcp"] + byName["log-udp"] + byName["log-other"] + byName["log-source-route"],
	}
	return byName, t
}
