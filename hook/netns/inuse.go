// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// InUse says what still reaches namespace id from a process, or "" when
// nothing does: a thread in it (any thread: one thread of a process may
// leave while another stays), a socket made in it, which sends through it
// whichever namespace its holder moved to (IPv4 and IPv6 ones: netlink
// sockets, such as the monitor's, carry no traffic), or an open file of the
// namespace itself. A bind mount alone does not count: a namespace that
// only a mount holds sends nothing, and whatever a runtime starts in it
// next runs the hook's create again.
//
// It reads every thread and open file on the host, so it is for prune,
// never for a container's create or poststop. The calling process is
// passed over: it is the one asking.
func InUse(id ID) string {
	procs, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		pids = append(pids, pid)
		tasks, _ := os.ReadDir("/proc/" + e.Name() + "/task")
		for _, t := range tasks {
			if got, ok := Peek("/proc/" + e.Name() + "/task/" + t.Name() + "/ns/net"); ok && got == id {
				return fmt.Sprintf("process %d runs in it", pid)
			}
		}
	}
	// Files second: they cost more, and a namespace with a process in it
	// is the usual case.
	nsLink := fmt.Sprintf("net:[%d]", id.Ino)
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
		fds, _ := os.ReadDir(dir)
		var sockets []int
		for _, f := range fds {
			link, err := os.Readlink(dir + f.Name())
			switch {
			case err != nil:
			case link == nsLink:
				if got, ok := Peek(dir + f.Name()); ok && got == id {
					return fmt.Sprintf("process %d holds the namespace open", pid)
				}
			case strings.HasPrefix(link, "socket:"):
				if fd, err := strconv.Atoi(f.Name()); err == nil {
					sockets = append(sockets, fd)
				}
			}
		}
		if len(sockets) > 0 {
			if why := heldSocketIn(pid, sockets, id); why != "" {
				return why
			}
		}
	}
	return ""
}

// heldSocketIn says whether one of pid's socket descriptors is an IPv4 or
// IPv6 socket of namespace id. The socket's namespace is known only from
// the socket itself (SIOCGSKNS), so each is copied here with pidfd_getfd.
// A socket that cannot be copied for want of the right (ptrace denied)
// counts as one: what cannot be checked keeps the fence.
func heldSocketIn(pid int, fds []int, id ID) string {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return "" // gone meanwhile
	}
	defer unix.Close(pidfd)
	for _, n := range fds {
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err == unix.EPERM {
			return fmt.Sprintf("process %d holds sockets that cannot be checked (%v)", pid, err)
		}
		if err != nil {
			continue // closed or gone meanwhile
		}
		// Only sockets that can carry traffic: the monitor's NFLOG and the
		// NRI plugin's nf_tables sockets are netlink ones.
		domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) {
			unix.Close(fd)
			continue
		}
		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		unix.Close(fd)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(nsfd, &st)
		unix.Close(nsfd)
		if err == nil && (ID{Dev: st.Dev, Ino: st.Ino}) == id {
			return fmt.Sprintf("process %d holds a socket made in it", pid)
		}
	}
	return ""
}
