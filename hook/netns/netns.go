// SPDX-License-Identifier: Apache-2.0

// Package netns identifies, finds and holds network namespaces, and runs code
// inside one; it refuses the host's own namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// ID identifies a network namespace for as long as it lives: the device
// and inode of its nsfs file.
type ID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// Key names the namespace's record file.
func (id ID) Key() string { return fmt.Sprintf("netns-%d-%d", id.Dev, id.Ino) }

// String is how the kernel names it in /proc/PID/ns/net links.
func (id ID) String() string { return fmt.Sprintf("net:[%d]", id.Ino) }

// Handle is a namespace and a path that reaches it now.
type Handle struct {
	ID   ID
	Path string
}

// PidPath is where the namespace of a process is.
func PidPath(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/ns/net" }

// Stat identifies the network namespace at path, and checks that it is
// one: a bind mount in /run/netns could hide any file.
func Stat(path string) (ID, error) {
	ns, closeNs, err := Open(path)
	if err != nil {
		return ID{}, err
	}
	closeNs()
	return ns.ID, nil
}

// Open opens the network namespace at path and holds it: the Handle it
// returns reaches that very namespace through /proc/self/fd until closeNs,
// whatever becomes of path meanwhile. A /proc/PID path could otherwise lead,
// once the process is gone and its pid reused, to another namespace, the
// host's among them.
func Open(path string) (ns Handle, closeNs func(), err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Handle{}, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return Handle{}, nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		unix.Close(fd)
		return Handle{}, nil, fmt.Errorf("%s is not a network namespace", path)
	}
	ns, closeNs = heldBy(ID{Dev: st.Dev, Ino: st.Ino}, fd)
	return ns, closeNs, nil
}

// Peek identifies a namespace path without opening it; good enough to
// compare /proc/PID/ns/net links, which are always namespaces.
func Peek(path string) (ID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ID{}, false
	}
	return ID{Dev: st.Dev, Ino: st.Ino}, true
}

// Host returns the namespaces the hook must never touch: its own and
// the host's, that of pid 1. They differ when the hook runs in a namespace of
// its own. Where pid 1 is shielded from us (an init holding capabilities we
// lack), kthreadd, pid 2, tells: kernel threads live in the host's namespace.
func Host() ([]ID, error) {
	own, err := Stat("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("identifying the hook's own network namespace: %w", err)
	}
	ids := []ID{own}
	init, err := Stat("/proc/1/ns/net")
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		if comm, _ := os.ReadFile("/proc/2/comm"); strings.TrimSpace(string(comm)) == "kthreadd" {
			init, err = Stat("/proc/2/ns/net")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("identifying the host's network namespace (pid 1's): %w", err)
	}
	return append(ids, init), nil
}

// Reached lists the namespaces that a path of /run/netns or a process's
// /proc/PID/ns/net reaches now: one look through every process for many
// namespaces, where Find looks once for each.
func Reached() map[ID]bool {
	out := map[ID]bool{}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if id, ok := Peek(filepath.Join(dir, e.Name())); ok {
				out[id] = true
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if id, ok := Peek("/proc/" + e.Name() + "/ns/net"); ok {
			out[id] = true
		}
	}
	return out
}

// Find looks for a path that reaches namespace id: first the hints,
// then /run/netns, then every process. ok is false when the namespace is gone
// (or pinned only by an open file descriptor, which no path reaches).
func Find(id ID, hints ...string) (Handle, bool) {
	for _, h := range hints {
		if h == "" {
			continue
		}
		if got, ok := Peek(h); ok && got == id {
			return Handle{ID: id, Path: h}, true
		}
	}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if got, ok := Peek(p); ok && got == id {
				return Handle{ID: id, Path: p}, true
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		p := "/proc/" + e.Name() + "/ns/net"
		if got, ok := Peek(p); ok && got == id {
			return Handle{ID: id, Path: p}, true
		}
	}
	return Handle{}, false
}

// In runs fn on an OS thread that has joined the namespace at path.
// Processes that fn starts inherit the namespace, so the host's iptables
// binaries act on the container's rules.
func In(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer target.Close()

	// A thread that cannot go back to its namespace is never reused: it
	// ends with fn.
	osthread.Run(func() bool {
		orig, oerr := netns.Get()
		if oerr != nil {
			err = fmt.Errorf("opening the hook's own network namespace: %w", oerr)
			return true
		}
		defer orig.Close()
		if serr := netns.Set(target); serr != nil {
			err = fmt.Errorf("joining network namespace %s: %w", path, serr)
			return false
		}
		err = fn()
		if berr := netns.Set(orig); berr != nil {
			err = errors.Join(err, fmt.Errorf("returning to the hook's own network namespace: %w", berr))
			return false
		}
		return true
	})
	return err
}

// Socket makes a socket in the namespace at path. A socket stays in the
// namespace it was made in, so only its making needs the namespace: a
// locked thread, never the process's first (osthread), joins it for that
// one system call and comes back. Should it fail to come back, the call
// fails and the thread ends with the call: nothing else ever
// runs in the container's namespace by mistake, and nothing panics (the
// NRI plugin calls this; a crash there would let containers start
// unfenced).
func Socket(path string, domain, typ, proto int) (int, error) {
	var fd int
	var err error
	osthread.Run(func() (back bool) {
		fd, err, back = socketIn(path, domain, typ, proto)
		return back
	})
	return fd, err
}

// setns is netns.Set unless a test makes it fail.
var setns = netns.Set

// socketIn makes the socket on the calling thread, which the caller has
// locked; back is false when the thread could not return to its own
// namespace, and must then be thrown away.
func socketIn(path string, domain, typ, proto int) (fd int, err error, back bool) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return -1, fmt.Errorf("opening network namespace %s: %w", path, err), true
	}
	defer target.Close()
	orig, err := netns.Get()
	if err != nil {
		return -1, fmt.Errorf("opening the hook's own network namespace: %w", err), true
	}
	defer orig.Close()
	// Joining the namespace the thread is in already checks, with no
	// effect, the right to come back to it (a user namespace may grant the
	// way in and not the way out).
	if err := setns(orig); err != nil {
		return -1, fmt.Errorf("checking the hook can return to its own network namespace: %w", err), true
	}
	if err := setns(target); err != nil {
		return -1, fmt.Errorf("joining network namespace %s: %w", path, err), true
	}
	fd, serr := unix.Socket(domain, typ, proto)
	if err := setns(orig); err != nil {
		if serr == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("returning from network namespace %s to the hook's own: %w (the thread is discarded)", path, err), false
	}
	return fd, serr, true
}

// NotHost refuses the host's namespace: rules there would cut off the host.
func NotHost(id ID) error {
	hosts, err := Host()
	if err != nil {
		return err
	}
	if slices.Contains(hosts, id) {
		return errors.New("the container shares the host's network namespace; rules there would cut off the host, so it cannot be fenced (give it a network namespace of its own, or do not select it)")
	}
	return nil
}

// OpenKnown holds the namespace of a record, checking that what it holds
// is that namespace and not whatever a path leads to by now: by its file
// handle fh (OpenHandle: one system call, and it reaches a namespace that
// only a thread or a socket holds), else through a path (OpenByPath, with
// hints).
func OpenKnown(id ID, fh string, hints []string) (Handle, func(), bool) {
	switch fd, err := openHandle(id, fh); {
	case err == nil:
		ns, closeNs := heldBy(id, fd)
		return ns, closeNs, true
	case errors.Is(err, unix.ESTALE):
		return Handle{}, nil, false // gone: no look through every process
	}
	return OpenByPath(id, fh, hints)
}
