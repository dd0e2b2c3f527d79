// SPDX-License-Identifier: Apache-2.0

package install

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func wrapperBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), RuntimeBinaryName)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDockerRuntime(t *testing.T) {
	bin := wrapperBinary(t)
	path := filepath.Join(t.TempDir(), "daemon.json")
	const orig = `{"log-driver": "journald", "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}, "default-runtime": "nvidia", "x-future": {"a": [1, 2]}}`
	os.WriteFile(path, []byte(orig), 0o600)

	res, err := WriteDockerRuntime(path, RuntimeRegistration{Binary: bin, Config: "/etc/bh/c.yaml"}, true)
	if err != nil || !res.Changed || res.ReplacedDefault != "nvidia" {
		t.Fatalf("%+v %v, want the replaced default nvidia said", res, err)
	}
	if b, _ := os.ReadFile(res.Backup); string(b) != orig {
		t.Errorf("backup %s holds %q, want the file as it was", res.Backup, b)
	}
	var got map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	rts := got["runtimes"].(map[string]any)
	ours := rts[RuntimeName].(map[string]any)
	if ours["path"] != bin || got["default-runtime"] != RuntimeName || got["log-driver"] != "journald" || rts["nvidia"] == nil || got["x-future"] == nil {
		t.Errorf("daemon.json after: %s", b)
	}
	if args, _ := json.Marshal(ours["runtimeArgs"]); string(args) != `["--bypass-hook-config=/etc/bh/c.yaml"]` {
		t.Errorf("runtimeArgs %s", args)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the file's 0600 kept", st.Mode().Perm())
	}
	if b, ok, _ := DockerRuntime(path); !ok || b != bin || !DockerDefaultRuntime(path) {
		t.Error("not seen as registered and default")
	}

	// Once is enough.
	if res, err := WriteDockerRuntime(path, RuntimeRegistration{Binary: bin, Config: "/etc/bh/c.yaml"}, true); err != nil || res.Changed {
		t.Errorf("second write: %+v %v, want unchanged", res, err)
	}

	res, err = RemoveDockerRuntime(path)
	if err != nil || !res.Changed {
		t.Fatalf("%+v %v", res, err)
	}
	b, _ = os.ReadFile(path)
	got = nil
	json.Unmarshal(b, &got)
	if _, ok := got["default-runtime"]; ok || got["runtimes"].(map[string]any)[RuntimeName] != nil || got["runtimes"].(map[string]any)["nvidia"] == nil || got["log-driver"] != "journald" {
		t.Errorf("daemon.json after --remove: %s", b)
	}
	if res, err := RemoveDockerRuntime(path); err != nil || res.Changed {
		t.Errorf("second remove: %+v %v", res, err)
	}
}

// --remove after an install leaves daemon.json as it was to the byte (its
// order of keys, its spacing), or absent where the install made it; a key the
// operator added since is kept.
func TestDockerRuntimeRemoveRestoresTheFile(t *testing.T) {
	bin := wrapperBinary(t)
	for _, tc := range []struct {
		name, orig, edit, want string // orig "" : no file; want "" : no file
	}{
		{name: "keys unsorted, tabs", orig: "{\n\t\"log-level\": \"warn\",\n\t\"data-root\": \"/srv/docker\"\n}\n", want: "{\n\t\"log-level\": \"warn\",\n\t\"data-root\": \"/srv/docker\"\n}\n"},
		{name: "empty runtimes kept", orig: `{"runtimes": {}}`, want: `{"runtimes": {}}`},
		{name: "an empty object", orig: "{}", want: "{}"},
		{name: "no file", orig: "", want: ""},
		{name: "a key added since", orig: `{"b": 1, "a": 2}`, edit: "debug", want: "{\n  \"a\": 2,\n  \"b\": 1,\n  \"debug\": true\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daemon.json")
			if tc.orig != "" {
				os.WriteFile(path, []byte(tc.orig), 0o640)
			}
			if _, err := WriteDockerRuntime(path, RuntimeRegistration{Binary: bin}, true); err != nil {
				t.Fatal(err)
			}
			if tc.edit != "" {
				var top map[string]any
				b, _ := os.ReadFile(path)
				json.Unmarshal(b, &top)
				top[tc.edit] = true
				b, _ = json.Marshal(top)
				os.WriteFile(path, b, 0o640)
			}
			if res, err := RemoveDockerRuntime(path); err != nil || !res.Changed {
				t.Fatalf("%+v %v", res, err)
			}
			got, err := os.ReadFile(path)
			switch {
			case tc.want == "" && !errors.Is(err, os.ErrNotExist):
				t.Errorf("the daemon.json the install made is still there: %q", got)
			case tc.want != "" && string(got) != tc.want:
				t.Errorf("after --remove:\n%q\nwant\n%q", got, tc.want)
			}
			if st, err := os.Stat(path); err == nil && st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
			}
		})
	}
}

func TestDockerRuntimeNewFileAndRefusals(t *testing.T) {
	bin := wrapperBinary(t)
	path := filepath.Join(t.TempDir(), "docker", "daemon.json")
	res, err := WriteDockerRuntime(path, RuntimeRegistration{Binary: bin}, false)
	if err != nil || !res.Changed || res.Backup != "" {
		t.Fatalf("%+v %v", res, err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"path": "`+bin+`"`) || strings.Contains(string(b), "runtimeArgs") || strings.Contains(string(b), "default-runtime") {
		t.Errorf("new daemon.json: %s", b)
	}
	bad := filepath.Join(t.TempDir(), "daemon.json")
	os.WriteFile(bad, []byte(`{"runtimes": `), 0o644)
	if _, err := WriteDockerRuntime(bad, RuntimeRegistration{Binary: bin}, false); err == nil {
		t.Error("a broken daemon.json was rewritten")
	}
	if b, _ := os.ReadFile(bad); string(b) != `{"runtimes": ` {
		t.Error("a broken daemon.json was changed")
	}
	if _, err := WriteDockerRuntime(path, RuntimeRegistration{Binary: "relative/bypass-hook-runtime"}, false); err == nil {
		t.Error("a relative binary was written")
	}
}

func TestContainerdRuntime(t *testing.T) {
	bin := wrapperBinary(t)
	for _, tc := range []struct {
		name, orig, table string
		systemd           bool
		errHas            string
	}{
		{name: "version 2 with runc's options", orig: "# the operator's comment\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n  Root = \"/run/r\"\n",
			table: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.bypass-hook`, systemd: true},
		{name: "version 1 (containerd 1.6's default)", orig: "root = \"/var/lib/containerd\"\n", table: "plugins.cri.containerd.runtimes.bypass-hook"},
		{name: "no file", orig: "", table: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.bypass-hook`},
		{name: "no newline at the end", orig: "version = 2\nroot = \"/var/lib/containerd\"", table: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.bypass-hook`},
		{name: "blank lines at the end", orig: "version = 2\n\n\n", table: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.bypass-hook`},
		{name: "only a comment", orig: "# nothing yet\n", table: "plugins.cri.containerd.runtimes.bypass-hook"},
		{name: "version 3 is containerd 2's: NRI", orig: "version = 3\n", errHas: "NRI"},
		{name: "defined by the operator", orig: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.bypass-hook]\n  runtime_type = \"io.containerd.runc.v2\"\n", errHas: "already defines"},
		{name: "broken TOML", orig: "version = = 2\n", errHas: "containerd cannot read it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if tc.orig != "" {
				os.WriteFile(path, []byte(tc.orig), 0o640)
			}
			res, err := WriteContainerdRuntime(path, RuntimeRegistration{Binary: bin})
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("want an error with %q, got %v", tc.errHas, err)
				}
				if b, _ := os.ReadFile(path); string(b) != tc.orig {
					t.Error("the file was changed")
				}
				return
			}
			if err != nil || !res.Changed || res.Table != tc.table {
				t.Fatalf("%+v %v", res, err)
			}
			b, _ := os.ReadFile(path)
			if !strings.HasPrefix(string(b), strings.TrimRight(tc.orig, "\n")) {
				t.Errorf("the operator's file was not kept as it was:\n%s", b)
			}
			var doc map[string]any
			if _, err := toml.Decode(string(b), &doc); err != nil {
				t.Fatal(err)
			}
			version, _ := doc["version"].(int64)
			rt, ok := lookup(doc, append(criKey(version), "containerd", "runtimes", RuntimeName))
			if !ok {
				t.Fatalf("no runtime entry in:\n%s", b)
			}
			m := rt.(map[string]any)
			opts := m["options"].(map[string]any)
			if m["runtime_type"] != "io.containerd.runc.v2" || opts["BinaryName"] != bin || (opts["SystemdCgroup"] == true) != tc.systemd || (opts["Root"] == "/run/r") != tc.systemd {
				t.Errorf("entry %v", m)
			}
			if pa, _ := m["pod_annotations"].([]any); len(pa) == 0 || pa[0] != "bypass-hook.io/*" {
				t.Errorf("pod_annotations %v", m["pod_annotations"])
			}
			if b, ok, _ := ContainerdRuntime(path); !ok || b != bin {
				t.Error("not seen as registered")
			}
			if res, err := WriteContainerdRuntime(path, RuntimeRegistration{Binary: bin}); err != nil || res.Changed {
				t.Errorf("second write: %+v %v, want unchanged", res, err)
			}
			res, err = RemoveContainerdRuntime(path)
			if err != nil || !res.Changed {
				t.Fatalf("remove: %+v %v", res, err)
			}
			after, err := os.ReadFile(path)
			if tc.orig == "" {
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("after --remove the file the install made is still there: %q", after)
				}
				return
			}
			if string(after) != tc.orig {
				t.Errorf("after --remove:\n%q\nwant\n%q", after, tc.orig)
			}
		})
	}
}

// containerd lets a pod annotation into config.json only where a pattern
// of the runtime's pod_annotations matches it (filepath.Match): ours and the
// near misses the hook must see to refuse.
func TestPodAnnotationsPassNearMisses(t *testing.T) {
	for _, key := range []string{"bypass-hook.io/enabled", "Bypass-Hook.IO/enabled", "bypass_hook.io/enabled", "bypass-hook.io.enabled", "BYPASS-HOOK.IO/mode", "bypas-hook.io/enabled"} {
		matched := false
		for _, p := range PodAnnotations {
			if ok, _ := filepath.Match(p, key); ok {
				matched = true
			}
		}
		if !matched {
			t.Errorf("%s is not passed by pod_annotations %q", key, PodAnnotations)
		}
	}
}
