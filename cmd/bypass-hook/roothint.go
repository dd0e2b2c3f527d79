// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io/fs"
)

// rootHint is what to add to an error that command met for not being root
// (euid): the state directory is root's alone.
func rootHint(command string, err error, euid int) string {
	if euid != 0 && errors.Is(err, fs.ErrPermission) {
		return fmt.Sprintf(" (the state directory is root's: run 'sudo bypass-hook %s')", command)
	}
	return ""
}
