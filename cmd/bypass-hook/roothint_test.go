// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io/fs"
	"os"
	"testing"
)

// A user who forgot sudo is told so; root, or another error, gets no hint.
func TestRootHint(t *testing.T) {
	denied := fmt.Errorf("reading the state directory /run/bypass-hook: %w", &fs.PathError{Op: "open", Path: "/run/bypass-hook", Err: fs.ErrPermission})
	for _, tc := range []struct {
		err  error
		euid int
		want string
	}{
		{denied, 1000, " (the state directory is root's: run 'sudo bypass-hook status')"},
		{denied, 0, ""},
		{fmt.Errorf("reading: %w", os.ErrNotExist), 1000, ""},
	} {
		if got := rootHint("status", tc.err, tc.euid); got != tc.want {
			t.Errorf("rootHint(%v, euid %d) = %q, want %q", tc.err, tc.euid, got, tc.want)
		}
	}
}
