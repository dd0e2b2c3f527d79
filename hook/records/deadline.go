// SPDX-License-Identifier: Apache-2.0

package records

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// LockBy takes the exclusive lock of namespace key's record, waiting for
// another hook to let go until deadline at the latest (and never longer
// than LockTimeout): a hook stage has one deadline for all its waits,
// below the runtime's hook timeout, so that it ends with its own error
// rather than the runtime's SIGKILL.
func (s *Store) LockBy(key string, deadline time.Time) (unlock func(), err error) {
	start := time.Now()
	if longest := start.Add(LockTimeout); longest.Before(deadline) {
		deadline = longest
	}
	for {
		unlock, err := s.lockOnce(key, true)
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) {
			return unlock, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("record lock %s: held by another hook for more than %s, all this stage may wait (is a bypass-hook process stuck? see `bypass-hook status`)", s.path(key, ".lock"), time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(2 * time.Millisecond)
	}
}
