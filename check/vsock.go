// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"strings"
)

// vsockItem says whether the host has AF_VSOCK, which netfilter never
// sees: a process in a fenced namespace (uid 65534, no capability) can
// open a vsock socket to the host or the hypervisor, and the fence does
// not stop it. The vsock core shows as the misc device vsock (/dev/vsock)
// whether built in or a module.
func vsockItem(p Paths) Item {
	it := Item{Section: "kernel", Name: "AF_VSOCK", Status: Info}
	var seen []string
	if _, err := os.Stat(filepath.Join(p.Sys, "class/misc/vsock")); err == nil {
		seen = append(seen, "/dev/vsock")
	}
	if data, err := os.ReadFile(filepath.Join(p.Proc, "modules")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, _, _ := strings.Cut(line, " "); strings.Contains(name, "vsock") {
				seen = append(seen, "module "+name)
			}
		}
	}
	if len(seen) == 0 {
		it.Detail = "not on this host (no /dev/vsock, no vsock module loaded): nothing leaves a fenced namespace through vsock"
		return it
	}
	it.Detail = "this host has AF_VSOCK (" + strings.Join(seen, ", ") + "): netfilter never sees it, so a process in a fenced namespace can reach the host or hypervisor through vsock; the fence does not stop it (see the README's \"What the fence does not stop\")"
	it.Fix = "if nothing on the host needs vsock, unload its modules (modprobe -r vmw_vsock_virtio_transport vsock) or block socket(AF_VSOCK) for containers with a seccomp profile"
	return it
}
