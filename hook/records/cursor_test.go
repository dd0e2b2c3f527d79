// SPDX-License-Identifier: Apache-2.0

package records

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Creates go round the directory in turn: each looks at no more than
// pruneBatch records, and a round of them sees every record, with lock
// files and records coming and going between them.
func TestNextKeysGoesRound(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	const n = 50
	write := func(i int) {
		for _, ext := range []string{".json", ".lock"} {
			if err := os.WriteFile(filepath.Join(s.Dir, fmt.Sprintf("netns-1-%d%s", i, ext)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range n {
		write(i)
	}
	seen := map[string]int{}
	rounds := 2 * (n/pruneBatch + 2)
	for i := range rounds {
		keys := s.nextKeys(pruneBatch)
		if len(keys) > pruneBatch {
			t.Fatalf("call %d looked at %d records, more than %d", i, len(keys), pruneBatch)
		}
		for _, k := range keys {
			seen[k]++
		}
		if i == rounds/2 {
			write(n) // one more, midway
		}
	}
	for i := range n + 1 {
		if k := fmt.Sprintf("netns-1-%d", i); seen[k] == 0 {
			t.Errorf("%s never looked at in %d calls", k, rounds)
		}
	}
}
