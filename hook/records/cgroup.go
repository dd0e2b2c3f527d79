// SPDX-License-Identifier: Apache-2.0

package records

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// Cgroup is the cgroup v2 group of an owner's first process at create.
// An unprivileged process cannot leave it, so it still holds the
// container's processes when the first one is gone: in a container without
// a pid namespace of its own, whatever pid 1 started lives on after it, and
// a chain of processes that fork and exit is never where a scan of /proc
// looks. The kernel's own "populated" flag of the group says at once
// whether any is left.
type Cgroup struct {
	// Path is the group as /proc/PID/cgroup names it (its "0::" line).
	Path string `json:"path"`
	// ID is the inode number of the group's directory (the kernel's cgroup
	// id): a group made again under the same path is another one.
	ID uint64 `json:"id"`
}

// cgroup2Mounts are where a cgroup v2 hierarchy is mounted: the unified
// layout, and the hybrid one beside the v1 controllers.
var cgroup2Mounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// Cgroup2Root returns the mount point of the cgroup v2 hierarchy, "" when
// there is none.
func Cgroup2Root() string {
	for _, m := range cgroup2Mounts {
		var fs unix.Statfs_t
		if unix.Statfs(m, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC {
			return m
		}
	}
	return ""
}

// CgroupOf returns the cgroup v2 group of pid, or nil where there is no v2
// hierarchy, or pid is in its root, or it shares the caller's group and
// has a pid namespace of its own (see cgroupOf).
func CgroupOf(pid int) *Cgroup { return cgroupOf(pid, os.Getpid()) }

// cgroupOf is CgroupOf as process self (the hook) sees it. A group that
// self shares (the runtime's, its caller's: podman --cgroups=disabled, a
// rootless runc without a delegated group, a cgroupsPath the runtime is
// in) holds more than the container, and keeps the fence while any of it
// runs. It is left out where the container has a pid namespace of its own:
// its first process outlives whatever runs in that (Owner.Runs). Without
// one it is the only guard left: a chain of processes that fork and exit
// outlives pid 1 unseen, and a fence kept longer is better than one taken
// out from under it.
func cgroupOf(pid, self int) *Cgroup {
	if pid <= 0 {
		return nil
	}
	root := Cgroup2Root()
	path := unifiedPath(fmt.Sprintf("/proc/%d/cgroup", pid))
	selfPath := unifiedPath(fmt.Sprintf("/proc/%d/cgroup", self))
	if in, err := InHostCgroupNamespace(); err == nil && !in {
		// The NRI plugin's pod: paths here are of its own namespace, and
		// prune on the node reads the host's. Both as the host sees them.
		paths := hostView(pid, self)
		path, selfPath, root = paths[0], paths[1], hostCgroup2Root()
	}
	if root == "" || path == "" || path == "/" || !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return nil
	}
	if path == selfPath && ownPidNamespace(pid, self) {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(filepath.Join(root, path), &st) != nil {
		return nil
	}
	return &Cgroup{Path: path, ID: st.Ino}
}

// hostCgroupNamespace is kthreadd's: the host's (pid 1's is not readable
// everywhere, even by root).
const hostCgroupNamespace = "/proc/2/ns/cgroup"

// InHostCgroupNamespace reports whether this process sees cgroups as the
// host does, in kthreadd's cgroup namespace; true on a kernel without
// cgroup namespaces (one view), an error where kthreadd's cannot be read.
func InHostCgroupNamespace() (bool, error) {
	var self, host unix.Stat_t
	if unix.Stat("/proc/self/ns/cgroup", &self) != nil {
		return true, nil
	}
	if err := unix.Stat(hostCgroupNamespace, &host); err != nil {
		return false, fmt.Errorf("%s: %w", hostCgroupNamespace, err)
	}
	return self.Dev == host.Dev && self.Ino == host.Ino, nil
}

// hostView reads the cgroup v2 paths of pids as the host's cgroup namespace
// names them, from a thread that joins it (/proc/PID/cgroup is written for
// the reader's namespace). "" for what cannot be read: no privilege to
// join, no host /proc.
func hostView(pids ...int) []string {
	paths := make([]string, len(pids))
	// The thread is never put back: it ends in the namespace it joined.
	osthread.Run(func() bool {
		fd, err := unix.Open(hostCgroupNamespace, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		defer unix.Close(fd)
		if unix.Setns(fd, unix.CLONE_NEWCGROUP) != nil {
			return false
		}
		for i, pid := range pids {
			paths[i] = unifiedPath(fmt.Sprintf("/proc/%d/cgroup", pid))
		}
		return false
	})
	return paths
}

// hostCgroup2Root is where the host's cgroup v2 hierarchy is seen whole
// from here: the own mount in the host's cgroup namespace, kthreadd's
// through /proc/2/root from one of its own (the NRI plugin's pod, whose
// mount shows only the pod's part). "" when there is none. Where
// kthreadd's namespace cannot be read (no privilege), the own mount.
func hostCgroup2Root() string {
	if in, err := InHostCgroupNamespace(); err != nil || in {
		return Cgroup2Root()
	}
	for _, m := range cgroup2Mounts {
		var fs unix.Statfs_t
		if p := "/proc/2/root" + m; unix.Statfs(p, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	return ""
}

// ownPidNamespace reports whether pid runs in another pid namespace than
// self; false where that cannot be read.
func ownPidNamespace(pid, self int) bool {
	var a, b unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &a) != nil || unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", self), &b) != nil {
		return false
	}
	return a.Dev != b.Dev || a.Ino != b.Ino
}

// unifiedPath reads the cgroup v2 path (the "0::" line) of a
// /proc/PID/cgroup file; "" when it has none.
func unifiedPath(file string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "0::"); ok {
			return p
		}
	}
	return ""
}

// GroupRuns reports whether the owner's cgroup (the same group, not another
// made again under its path) still holds a process.
func (o Owner) GroupRuns() bool {
	if o.Cgroup == nil {
		return false
	}
	// The path is the host's name of the group: look in the host's view.
	root := hostCgroup2Root()
	if root == "" {
		return false
	}
	dir := filepath.Join(root, o.Cgroup.Path)
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil || st.Ino != o.Cgroup.ID {
		return false
	}
	events, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	return err == nil && bytes.Contains(events, []byte("populated 1"))
}

// Remains reports whether anything of the owner's container still runs,
// wherever it is: its first process, or a process of its cgroup.
func (o Owner) Remains() bool { return o.Runs() || o.GroupRuns() }

// AnyOwnerRemains reports whether an owner's process runs in namespace ns,
// or anything of an owner's container still runs elsewhere (Remains): a
// pid 1 that moved into a namespace of its own may have left workers in
// ns, held by threads or sockets that no path shows.
func AnyOwnerRemains(ns netns.ID, owners []Owner) bool {
	return slices.ContainsFunc(owners, func(o Owner) bool { return o.Alive(ns) || o.Remains() })
}

// OwnerGroupRuns says which owner's cgroup still holds a process, or "".
func OwnerGroupRuns(rec *Record) string {
	for _, o := range rec.Owners {
		if o.GroupRuns() {
			return fmt.Sprintf("the cgroup %s of container %s still has processes", o.Cgroup.Path, o.ID)
		}
	}
	return ""
}
