// SPDX-License-Identifier: Apache-2.0

package records

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
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

// cgroup2Root returns the mount point of the cgroup v2 hierarchy, "" when
// there is none.
func cgroup2Root() string {
	for _, m := range cgroup2Mounts {
		var fs unix.Statfs_t
		if unix.Statfs(m, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC {
			return m
		}
	}
	return ""
}

// CgroupOf returns the cgroup v2 group of pid, or nil where there is no v2
// hierarchy, or pid is in its root or in the caller's group (no group of
// its own to tell by).
func CgroupOf(pid int) *Cgroup {
	if pid <= 0 {
		return nil
	}
	root := cgroup2Root()
	if root == "" {
		return nil
	}
	path := unifiedPath(fmt.Sprintf("/proc/%d/cgroup", pid))
	if path == "" || path == "/" || !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		return nil
	}
	// A group the hook shares (the runtime's, its caller's) is not the
	// container's own: its other processes would keep the fence forever.
	if path == unifiedPath("/proc/self/cgroup") {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(filepath.Join(root, path), &st) != nil {
		return nil
	}
	return &Cgroup{Path: path, ID: st.Ino}
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
	root := cgroup2Root()
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

// OwnerGroupRuns says which owner's cgroup still holds a process, or "".
func OwnerGroupRuns(rec *Record) string {
	for _, o := range rec.Owners {
		if o.GroupRuns() {
			return fmt.Sprintf("the cgroup %s of container %s still has processes", o.Cgroup.Path, o.ID)
		}
	}
	return ""
}
