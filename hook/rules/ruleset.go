// SPDX-License-Identifier: Apache-2.0

package rules

import (
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
