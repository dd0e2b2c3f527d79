// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVsockItem(t *testing.T) {
	for _, tc := range []struct {
		name    string
		misc    bool
		modules string
		want    string
	}{
		{"none", false, "nf_tables 1 0 - Live 0x0\n", "not on this host"},
		{"built in", true, "", "/dev/vsock"},
		{"modules", false, "vmw_vsock_virtio_transport 16384 0 - Live 0x0\nvsock 61440 1 vmw_vsock_virtio_transport, Live 0x0\n", "module vsock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			p := Paths{Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys")}
			os.MkdirAll(p.Proc, 0o755)
			if tc.misc {
				os.MkdirAll(filepath.Join(p.Sys, "class/misc/vsock"), 0o755)
			}
			os.WriteFile(filepath.Join(p.Proc, "modules"), []byte(tc.modules), 0o644)
			it := vsockItem(p)
			if it.Status != Info || !strings.Contains(it.Detail, tc.want) {
				t.Errorf("%+v; want info with %q", it, tc.want)
			}
			if tc.want != "not on this host" && !strings.Contains(it.Detail, "does not stop") {
				t.Errorf("%+v does not say the fence does not stop vsock", it)
			}
		})
	}
}
