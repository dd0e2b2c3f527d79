// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InUse says what still reaches namespace id from a process, or "" when
// nothing does: a thread in it (any thread: one thread of a process may
// leave while another stays), a socket made in it, which sends through it
// whichever namespace its holder moved to (IPv4 and IPv6 ones: netlink
// sockets, such as the monitor's, carry no traffic), or an open file of the
// namespace itself, and any socket made in it that no process's file
// table shows (in flight, in a thread's own table, in io_uring). A bind
// mount alone does not count: a namespace that only a mount holds sends
// nothing, and whatever a runtime starts in it next runs the hook's create
// again.
//
// It reads every thread and open file on the host, so it is for prune,
// never for a container's create or poststop. The calling process is
// passed over (it is the one asking, and the monitor holds the namespaces
// it follows), but for its sockets, which are counted as seen.
func InUse(id ID) string {
	self := os.Getpid()
	procs, _ := os.ReadDir("/proc")
	pids := []int{self} // first: its sockets may be all the namespace has
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
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
	// A socket need not be in any process's file table to be used later:
	// one in flight over a unix socket (SCM_RIGHTS), in the file table of a
	// thread that unshared its own (/proc/PID/fd shows the main thread's),
	// or registered with io_uring, comes back whole when its holder wants
	// it. The namespace itself counts every socket made in it that user
	// space holds: the file tables must show them all, and none may be one
	// that sends. The count also spares copying sockets once all are found.
	total, counted := socketsIn(id)
	// Files second: they cost more, and a namespace with a process in it
	// is the usual case. The caller's own sockets (the monitor's netlink
	// ones) are only counted. The sockets of the namespace found are held
	// (copied) until the count is read again: one the workload closes or
	// makes meanwhile can then not make the tally come out even.
	nsLink := fmt.Sprintf("net:[%d]", id.Ino)
	held := map[uint64]int{} // socket inode: our copy
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
		fds, _ := os.ReadDir(dir)
		var sockets []int
		for _, f := range fds {
			link, err := os.Readlink(dir + f.Name())
			switch {
			case err != nil:
			case link == nsLink && pid != self:
				if got, ok := Peek(dir + f.Name()); ok && got == id {
					return fmt.Sprintf("process %d holds the namespace open", pid)
				}
			case strings.HasPrefix(link, "socket:"):
				if fd, err := strconv.Atoi(f.Name()); err == nil {
					sockets = append(sockets, fd)
				}
			}
		}
		if len(sockets) > 0 && (!counted || len(held) < total) {
			if why := heldSocketIn(pid, sockets, id, held); why != "" && pid != self {
				return why
			}
		}
	}
	if !counted {
		return ""
	}
	// The count read now is the one that holds: every socket found is
	// held, so none of them has left it. A socket whose last holder just
	// died leaves the count a little later (netlink ones after an RCU
	// grace period): a count too high is read again a few times.
	for try := 0; ; try++ {
		now, ok := socketsIn(id)
		if !ok {
			now = total
		}
		if now <= len(held) {
			return ""
		}
		if try == 5 {
			return fmt.Sprintf("%d sockets made in it are held where no process's file table shows them (in flight over a unix socket, or in a thread's own file table)", now-len(held))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// socketsIn reads how many sockets made in namespace id user space holds
// ("sockets: used" of its /proc/net/sockstat). ok is false when no path
// reaches the namespace, or the count cannot be read.
func socketsIn(id ID) (n int, ok bool) {
	at, found := Find(id, nsfsMounts()...)
	if !found {
		return 0, false
	}
	var stat []byte
	err := In(at.Path, func() error {
		var err error
		stat, err = os.ReadFile("/proc/thread-self/net/sockstat")
		return err
	})
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	used, found := strings.CutPrefix(line, "sockets: used ")
	if !found {
		return 0, false
	}
	n, err = strconv.Atoi(strings.TrimSpace(used))
	return n, err == nil
}

// nsfsMounts lists the mount points of namespace files in the caller's
// mount namespace: where runtimes bind their network namespaces (Docker's
// under /run/docker/netns, CNI's under /run/netns, podman's elsewhere).
func nsfsMounts() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(line)
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "nsfs" && len(fields) > 4 {
				out = append(out, unescapeMount(fields[4]))
			}
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// heldSocketIn adds to held (by socket inode, each once however many
// descriptors reach it) a copy of each of pid's socket descriptors made
// in namespace id, and says whether one is an IPv4 or IPv6 socket. The
// socket's namespace is known only from the socket itself (SIOCGSKNS), so
// each is copied here with pidfd_getfd. A socket that cannot be copied for
// want of the right (ptrace denied) counts as one: what cannot be checked
// keeps the fence.
func heldSocketIn(pid int, fds []int, id ID, held map[uint64]int) (why string) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return "" // gone meanwhile
	}
	defer unix.Close(pidfd)
	for _, fdn := range fds {
		fd, err := unix.PidfdGetfd(pidfd, fdn, 0) // close-on-exec, as pidfd_getfd makes it
		if err == unix.EPERM {
			return fmt.Sprintf("process %d holds sockets that cannot be checked (%v)", pid, err)
		}
		if err != nil {
			continue // closed or gone meanwhile
		}
		var sock unix.Stat_t
		if err := unix.Fstat(fd, &sock); err != nil {
			unix.Close(fd)
			continue
		}
		if _, seen := held[sock.Ino]; seen {
			unix.Close(fd)
			continue
		}
		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		if err != nil {
			unix.Close(fd)
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(nsfd, &st)
		unix.Close(nsfd)
		if err != nil || (ID{Dev: st.Dev, Ino: st.Ino}) != id {
			unix.Close(fd)
			continue
		}
		held[sock.Ino] = fd
		// Only sockets that can carry traffic: the monitor's NFLOG and the
		// NRI plugin's nf_tables sockets are netlink ones.
		domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err == nil && (domain == unix.AF_INET || domain == unix.AF_INET6) && why == "" {
			why = fmt.Sprintf("process %d holds a socket made in it", pid)
		}
	}
	return why
}
