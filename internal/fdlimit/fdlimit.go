// SPDX-License-Identifier: Apache-2.0

// Package fdlimit says how many descriptors a cache may keep open.
package fdlimit

import (
	"sync"

	"golang.org/x/sys/unix"
)

// Quarter is a quarter of the process's limit of open files
// (RLIMIT_NOFILE, which Go raises to the hard limit at start): what one
// cache of descriptors kept open between uses (the monitor's sockets in
// the fenced namespaces, its pidfds of their owners) may hold. The rest is
// left to what must not fail for want of a descriptor (NFLOG sockets,
// records, the hook's own work).
var Quarter = sync.OnceValue(func() int {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 1 << 28
	}
	return int(l.Cur / 4)
})
