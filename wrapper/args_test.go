// SPDX-License-Identifier: Apache-2.0

package wrapper

import (
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		opts    Options
		cmd     string
		bundle  string
		spec    string
		log     string
		rest    []string // the runtime's args; nil means args itself
		wantErr bool
	}{
		{name: "containerd's shim create", args: []string{"--root", "/run/containerd/runc/k8s.io", "--log", "/run/x/log.json", "--log-format", "json", "create", "--bundle", "/run/b", "--pid-file", "/run/b/init.pid", "web"},
			cmd: "create", bundle: "/run/b", log: "/run/x/log.json"},
		{name: "short bundle flag", args: []string{"create", "-b", "/b", "id"}, cmd: "create", bundle: "/b"},
		{name: "bundle with =", args: []string{"run", "--bundle=/b", "id"}, cmd: "run", bundle: "/b"},
		{name: "single dash long flag", args: []string{"create", "-bundle", "/b", "id"}, cmd: "create", bundle: "/b"},
		{name: "no bundle: the working directory", args: []string{"create", "id"}, cmd: "create"},
		{name: "value flag before bundle", args: []string{"create", "--console-socket", "/s", "--bundle", "/b", "id"}, cmd: "create", bundle: "/b"},
		{name: "a flag's value that looks like -b", args: []string{"create", "--pid-file", "-b", "--bundle", "/b", "id"}, cmd: "create", bundle: "/b"},
		{name: "switches before the command", args: []string{"--debug", "--systemd-cgroup", "create", "--bundle", "/b", "id"}, cmd: "create", bundle: "/b"},
		{name: "rootless takes a value", args: []string{"--rootless", "false", "create", "-b", "/b", "id"}, cmd: "create", bundle: "/b"},
		// runc (urfave/cli) moves flags that follow the id in front of it,
		// crun (getopt) permutes them: both create from /b.
		{name: "bundle after the id", args: []string{"create", "id", "--bundle", "/b"}, cmd: "create", bundle: "/b"},
		{name: "bundle given twice: the last", args: []string{"create", "--bundle", "/a", "id", "-b", "/b"}, cmd: "create", bundle: "/b"},
		{name: "-- ends the flags", args: []string{"run", "-b", "/a", "--", "id", "--bundle", "/b"}, cmd: "run", bundle: "/a"},
		{name: "detach is a switch", args: []string{"run", "--detach", "--bundle", "/b", "id"}, cmd: "run", bundle: "/b"},
		{name: "restore makes a container from a bundle", args: []string{"restore", "--image-path", "/ckpt", "--bundle", "/b", "id"}, cmd: "restore", bundle: "/b"},
		{name: "crun's spec file", args: []string{"create", "-b", "/b", "--config", "/b/other.json", "id"}, cmd: "create", bundle: "/b", spec: "/b/other.json"},
		{name: "crun's spec file, short", args: []string{"run", "-f", "x.json", "id"}, cmd: "run", spec: "x.json"},
		{name: "start passes", args: []string{"--root", "/r", "start", "id"}, cmd: "start"},
		{name: "delete passes", args: []string{"delete", "--force", "id"}, cmd: "delete"},
		{name: "a value equal to a command", args: []string{"--root", "create", "state", "id"}, cmd: "state"},
		{name: "version", args: []string{"--version"}},
		{name: "nothing", args: nil},
		{name: "own flags first", args: []string{"--bypass-hook-config", "/etc/c.yaml", "--bypass-hook-runtime=crun", "--bypass-hook-oci", "/usr/bin/bypass-hook-oci", "--root", "/r", "create", "--bundle", "/b", "id"},
			opts: Options{Config: "/etc/c.yaml", Runtime: "crun", Hook: "/usr/bin/bypass-hook-oci"}, cmd: "create", bundle: "/b",
			rest: []string{"--root", "/r", "create", "--bundle", "/b", "id"}},
		{name: "own flag later is the runtime's", args: []string{"create", "--bypass-hook-config", "/c", "id"}, cmd: "create"},
		{name: "own flag without a value", args: []string{"--bypass-hook-config"}, wantErr: true},
		{name: "own flag with an empty value", args: []string{"--bypass-hook-runtime=", "create"}, wantErr: true},
		{name: "bundle without a value", args: []string{"create", "--bundle"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := ParseArgs(slices.Clone(tc.args))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", inv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest := tc.rest
			if rest == nil {
				rest = tc.args
			}
			if inv.Options != tc.opts || inv.Command != tc.cmd || inv.Bundle != tc.bundle || inv.Spec != tc.spec || inv.Log != tc.log || !slices.Equal(inv.Args, rest) {
				t.Errorf("got %+v\nwant opts %+v cmd %q bundle %q spec %q log %q args %q", inv, tc.opts, tc.cmd, tc.bundle, tc.spec, tc.log, rest)
			}
		})
	}
}
