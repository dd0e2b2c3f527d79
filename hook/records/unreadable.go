// SPDX-License-Identifier: Apache-2.0

package records

import (
	"os"
)

// Unreadable lists the records of the state directory that cannot be read
// or parsed. A poststop that finds no record of its own says so when there
// are any: one of them may be its own, whose fence would otherwise be left
// in place in silence.
func (s *Store) Unreadable() []string {
	keys, _ := s.Keys()
	var bad []string
	for _, k := range keys {
		if _, err := s.Load(k); err != nil && !os.IsNotExist(err) {
			bad = append(bad, s.path(k, ".json"))
		}
	}
	return bad
}
