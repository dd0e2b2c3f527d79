// SPDX-License-Identifier: Apache-2.0

// Package fserr shortens the file-system errors that bypass-hook puts into
// its own messages, which already say what was being done.
package fserr

import (
	"errors"
	"fmt"
	"os"
)

// Cause is the reason of a *os.PathError alone ("permission denied"), for a
// message that names the path already; any other error is returned as is.
func Cause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// WithPath is a *os.PathError as "path: reason", without the operation's
// name; any other error is returned as is.
func WithPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
