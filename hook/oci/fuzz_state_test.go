// SPDX-License-Identifier: Apache-2.0

package oci

import (
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// FuzzParseState: whatever a runtime (or anyone) writes to stdin, the
// parser returns a state it has checked or an InputError, and never panics.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"bypass-hook.io/mode":"audit"}}`))
	f.Add([]byte(`{"id":"c1","status":"stopped"}`))
	f.Add([]byte(`{"id":"a\u0000b","pid":-1}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			if _, ok := err.(*InputError); !ok {
				t.Fatalf("error %v is %T, not an InputError", err, err)
			}
			return
		}
		if st.ID == "" || !idRe().MatchString(st.ID) || st.Pid < 0 {
			t.Fatalf("accepted a state that breaks the checks: %+v", st)
		}
		// The id is safe inside a quoted log prefix and an iptables-restore
		// line: no quote, space or line break can come from it.
		if p := rules.LogPrefix("bypass", st.ID); strings.ContainsAny(strings.TrimSuffix(p, " "), " \t\n\r\"'\\") {
			t.Fatalf("log prefix %q from id %q", p, st.ID)
		}
	})
}
