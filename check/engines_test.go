// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/install"
)

func version(t *testing.T, name, out string) install.EngineVersion {
	t.Helper()
	v, ok := install.ParseEngineVersion(name, out)
	if !ok {
		t.Fatalf("cannot parse %q", out)
	}
	v.Binary = "/usr/bin/" + strings.ToLower(name) + "d"
	return v
}

func TestEngineItems(t *testing.T) {
	docker20 := version(t, install.EngineDocker, "Docker version 20.10.24+dfsg1, build 5d6db84")
	docker29 := version(t, install.EngineDocker, "Docker version 29.0.1, build eedd969")
	cd16 := version(t, install.EngineContainerd, "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3")
	cd22 := version(t, install.EngineContainerd, "containerd github.com/containerd/containerd/v2 v2.2.0 1c4457e")
	reg := func(names ...string) []Item {
		var items []Item
		for _, n := range names {
			items = append(items, Item{Section: "registration", Name: n, Status: OK})
		}
		return items
	}
	podman := []install.Engine{{Name: "podman"}}
	type want struct{ name, status, has string }
	for _, tc := range []struct {
		name    string
		vs      []install.EngineVersion
		engines []install.Engine
		regs    []Item
		want    []want
	}{
		{"Debian 12: CDI alone serves no Docker 20.10", []install.EngineVersion{docker20, cd16}, nil, reg("cdi"),
			[]want{{"Docker", "warn", "needs Docker 25"}, {"containerd", "info", "containerd-runtime"}, {"cdi", "warn", "install docker-runtime"}}},
		{"Debian 12 with the wrapper", []install.EngineVersion{docker20, cd16}, nil, reg("docker-runtime", "containerd-runtime"),
			[]want{{"Docker", "ok", "served by docker-runtime"}, {"containerd", "ok", "served by containerd-runtime"}}},
		{"CDI read by podman: no registration warning", []install.EngineVersion{docker20}, podman, reg("cdi", "hooks.d"),
			[]want{{"Docker", "warn", "docker-runtime"}}},
		{"NRI on containerd 1.6", []install.EngineVersion{cd16}, nil, reg("nri"),
			[]want{{"containerd", "info", "install containerd-runtime"}, {"nri", "warn", "containerd 1.6.20~ds1: bypass-hook install containerd-runtime"}}},
		{"Docker 29 and containerd 2.2 with CDI and NRI", []install.EngineVersion{docker29, cd22}, nil, reg("cdi", "nri"),
			[]want{{"Docker", "ok", "served by cdi"}, {"containerd", "ok", "served by nri, cdi"}}},
		{"a failing registration does not serve", []install.EngineVersion{docker20}, nil, []Item{{Section: "registration", Name: "docker-runtime", Status: Fail}},
			[]want{{"Docker", "warn", "NONE"}}},
		{"not judged", nil, nil, reg("cdi"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := engineItems(Paths{EngineVersions: tc.vs, Engines: tc.engines}, tc.regs)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d items, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Name != w.name || string(g.Status) != w.status || !strings.Contains(g.Detail+" "+g.Fix, w.has) {
					t.Errorf("item %d: %+v, want %s %s with %q", i, g, w.name, w.status, w.has)
				}
			}
		})
	}
}

func TestRuntimeItems(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, install.RuntimeBinaryName)
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	daemon := filepath.Join(dir, "daemon.json")
	os.WriteFile(daemon, []byte(`{"runtimes": {"bypass-hook": {"path": "`+bin+`"}}, "default-runtime": "bypass-hook"}`), 0o644)
	p := Paths{DaemonJSON: daemon, ContainerdConfig: filepath.Join(dir, "absent.toml")}

	items := runtimeItems(p)
	if len(items) != 1 || items[0].Status != Fail || !strings.Contains(items[0].Detail, install.HookBinaryName) {
		t.Fatalf("wrapper without its hook beside it: %+v", items)
	}
	os.WriteFile(filepath.Join(dir, install.HookBinaryName), []byte("#!/bin/sh\n"), 0o755)
	items = runtimeItems(p)
	if len(items) != 1 || items[0].Status != OK || !strings.Contains(items[0].Detail, "default runtime") {
		t.Fatalf("%+v", items)
	}
	toml := filepath.Join(dir, "config.toml")
	if _, err := install.WriteContainerdRuntime(toml, install.RuntimeRegistration{Binary: bin}); err != nil {
		t.Fatal(err)
	}
	p.ContainerdConfig = toml
	if items = runtimeItems(p); len(items) != 2 || items[1].Name != install.RegContainerdRuntime || items[1].Status != OK {
		t.Fatalf("%+v", items)
	}
}
