// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

func TestNewCDISpec(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    install.Registration
		want string
	}{
		{
			name: "default config",
			t:    install.Registration{Binary: "/usr/local/bin/bypass-hook"},
			want: `{
  "cdiVersion": "0.3.0",
  "kind": "bypass-hook.io/fence",
  "devices": [
    {"name": "default", "containerEdits": {"hooks": [
      {"hookName": "createRuntime", "path": "/usr/local/bin/bypass-hook",
       "args": ["/usr/local/bin/bypass-hook", "create", "--cdi-device", "default"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "timeout": 10},
      {"hookName": "poststop", "path": "/usr/local/bin/bypass-hook",
       "args": ["/usr/local/bin/bypass-hook", "poststop", "--cdi-device", "default"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "timeout": 10}]}},
    {"name": "audit", "containerEdits": {"hooks": [
      {"hookName": "createRuntime", "path": "/usr/local/bin/bypass-hook",
       "args": ["/usr/local/bin/bypass-hook", "create", "--cdi-device", "audit"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "timeout": 10},
      {"hookName": "poststop", "path": "/usr/local/bin/bypass-hook",
       "args": ["/usr/local/bin/bypass-hook", "poststop", "--cdi-device", "audit"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "timeout": 10}]}}
  ],
  "containerEdits": {}
}`,
		},
		{
			name: "named config and timeout",
			t:    install.Registration{Binary: "/opt/bh/bypass-hook", Config: "/etc/bh.yaml", Timeout: 4},
			want: `{
  "cdiVersion": "0.3.0",
  "kind": "bypass-hook.io/fence",
  "devices": [
    {"name": "default", "containerEdits": {"hooks": [
      {"hookName": "createRuntime", "path": "/opt/bh/bypass-hook",
       "args": ["/opt/bh/bypass-hook", "--config", "/etc/bh.yaml", "create", "--cdi-device", "default"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "BYPASS_HOOK_CONFIG=/etc/bh.yaml"], "timeout": 4},
      {"hookName": "poststop", "path": "/opt/bh/bypass-hook",
       "args": ["/opt/bh/bypass-hook", "--config", "/etc/bh.yaml", "poststop", "--cdi-device", "default"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "BYPASS_HOOK_CONFIG=/etc/bh.yaml"], "timeout": 4}]}},
    {"name": "audit", "containerEdits": {"hooks": [
      {"hookName": "createRuntime", "path": "/opt/bh/bypass-hook",
       "args": ["/opt/bh/bypass-hook", "--config", "/etc/bh.yaml", "create", "--cdi-device", "audit"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "BYPASS_HOOK_CONFIG=/etc/bh.yaml"], "timeout": 4},
      {"hookName": "poststop", "path": "/opt/bh/bypass-hook",
       "args": ["/opt/bh/bypass-hook", "--config", "/etc/bh.yaml", "poststop", "--cdi-device", "audit"],
       "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "BYPASS_HOOK_CONFIG=/etc/bh.yaml"], "timeout": 4}]}}
  ],
  "containerEdits": {}
}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := install.MarshalCDISpec(install.NewCDISpec(tc.t))
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatalf("the test's own JSON: %v", err)
			}
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Errorf("spec:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// The version must be one that podman 4.3's CDI library reads (it knows
// nothing after 0.5.0) and that today's library accepts for what the spec
// holds.
func TestCDIVersion(t *testing.T) {
	spec := install.NewCDISpec(install.Registration{Binary: "/usr/bin/bypass-hook"})
	if err := cdispec.ValidateVersion(&spec); err != nil {
		t.Fatalf("the CDI library refuses version %s: %v", spec.Version, err)
	}
	var major, minor, patch int
	if n, _ := fmt.Sscanf(install.CDIVersion, "%d.%d.%d", &major, &minor, &patch); n != 3 || major > 0 || minor > 5 {
		t.Errorf("cdiVersion %s is newer than podman 4.3 reads (0.5.0)", install.CDIVersion)
	}
}

// What a runtime does with the spec, through the CDI library that Docker,
// containerd and podman use: it loads without error, lists both devices,
// and injecting a device adds our two hooks to the container's OCI spec
// and nothing else.
func TestCDISpecInjects(t *testing.T) {
	bin := fakeBinary(t)
	dir := t.TempDir()
	path, changed, err := install.WriteCDI("", dir, install.Registration{Binary: bin, Config: "/etc/bh.yaml"})
	if err != nil || !changed {
		t.Fatalf("WriteCDI: changed=%v err=%v", changed, err)
	}
	if filepath.Base(path) != "bypass-hook.io-fence.json" {
		t.Errorf("spec file %s, want bypass-hook.io-fence.json", path)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	if errs := cache.GetErrors(); len(errs) > 0 {
		t.Fatalf("the CDI library's errors for the spec: %v", errs)
	}
	wantDevices := []string{config.CDIKind + "=audit", config.CDIKind + "=default"}
	if got := cache.ListDevices(); !slices.Equal(got, wantDevices) {
		t.Errorf("devices %v, want %v", got, wantDevices)
	}
	for _, dev := range config.Devices {
		oci := &specs.Spec{Process: &specs.Process{Env: []string{"A=1"}}, Linux: &specs.Linux{}}
		if _, err := cache.InjectDevices(oci, config.CDIKind+"="+dev); err != nil {
			t.Fatalf("InjectDevices %s: %v", dev, err)
		}
		if oci.Hooks == nil || len(oci.Hooks.CreateRuntime) != 1 || len(oci.Hooks.Poststop) != 1 ||
			len(oci.Hooks.Prestart)+len(oci.Hooks.CreateContainer)+len(oci.Hooks.StartContainer)+len(oci.Hooks.Poststart) != 0 {
			t.Fatalf("device %s: hooks %+v, want one createRuntime and one poststop", dev, oci.Hooks)
		}
		for stage, h := range map[string]specs.Hook{"create": oci.Hooks.CreateRuntime[0], "poststop": oci.Hooks.Poststop[0]} {
			want := []string{bin, "--config", "/etc/bh.yaml", stage, "--cdi-device", dev}
			if h.Path != bin || !slices.Equal(h.Args, want) || h.Timeout == nil || *h.Timeout != install.DefaultTimeout {
				t.Errorf("device %s, %s hook: %+v, want path %s args %v", dev, stage, h, bin, want)
			}
		}
		if !slices.Equal(oci.Process.Env, []string{"A=1"}) || len(oci.Linux.Devices) != 0 || len(oci.Mounts) != 0 {
			t.Errorf("device %s changed more than the hooks: env %v devices %v mounts %v", dev, oci.Process.Env, oci.Linux.Devices, oci.Mounts)
		}
	}
}

// installBinary puts an executable at root/path, as packaging into a
// DESTDIR would.
func installBinary(t *testing.T, root, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, path), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// Under a root (make install's DESTDIR): the spec goes to root/dir and
// names the binary as installed.
func TestWriteCDIIdempotentAndRemove(t *testing.T) {
	root := t.TempDir()
	const bin, other = "/usr/local/bin/bypass-hook", "/opt/bh/bypass-hook"
	installBinary(t, root, bin)
	installBinary(t, root, other)
	tgt := install.Registration{Binary: bin}
	path, changed, err := install.WriteCDI(root, "/etc/cdi", tgt)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	if want := filepath.Join(root, "etc/cdi", install.CDIFileName); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	st1, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644: rootless podman reads it too", st1.Mode().Perm())
	}
	time.Sleep(10 * time.Millisecond)
	if _, changed, err := install.WriteCDI(root, "/etc/cdi", tgt); err != nil || changed {
		t.Errorf("second write: changed=%v err=%v, want unchanged", changed, err)
	}
	st2, _ := os.Stat(path)
	if !st2.ModTime().Equal(st1.ModTime()) || !os.SameFile(st1, st2) {
		t.Errorf("an unchanged spec was written again (runtimes watching the directory reload it)")
	}
	// Another binary: the file is replaced in one rename.
	if _, changed, err := install.WriteCDI(root, "/etc/cdi", install.Registration{Binary: other}); err != nil || !changed {
		t.Fatalf("rewrite: changed=%v err=%v", changed, err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"`+other+`"`) || strings.Contains(string(data), root) {
		t.Errorf("the spec does not run %s:\n%s", other, data)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the CDI directory holds %d entries, want only the spec (no temporary file left)", len(entries))
	}

	if _, removed, err := install.RemoveCDI(root, "/etc/cdi"); err != nil || !removed {
		t.Fatalf("remove: removed=%v err=%v", removed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the spec is still there: %v", err)
	}
	if _, removed, err := install.RemoveCDI(root, "/etc/cdi"); err != nil || removed {
		t.Errorf("second remove: removed=%v err=%v, want nothing to do", removed, err)
	}
}

func TestWriteCDIRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		t       install.Registration
		wantErr string
	}{
		{"relative binary", install.Registration{Binary: "bypass-hook"}, "absolute"},
		{"missing binary", install.Registration{Binary: "/nonexistent/bypass-hook"}, "install it first"},
		{"relative config", install.Registration{Binary: fakeBinary(t), Config: "config.yaml"}, "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := install.WriteCDI("", dir, tc.t)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err %v, want one mentioning %q", err, tc.wantErr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("something was written for a refused target")
			}
		})
	}
}
