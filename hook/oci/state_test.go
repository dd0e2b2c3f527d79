// SPDX-License-Identifier: Apache-2.0

package oci_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/oci"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
)

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		errHas   string
	}{
		{"runc createRuntime", `{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"a":"b"}}`, ""},
		{"poststop without pid", `{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}`, ""},
		{"empty", "", "stdin is empty"},
		{"blank", " \n\t", "stdin is empty"},
		{"garbage", "not json", "not an OCI state"},
		{"array", "[1,2]", "not an OCI state"},
		{"no id", `{"status":"creating","pid":1}`, "no container id"},
		{"bad id", `{"id":"a b\"c","status":"creating","pid":1}`, "container id"},
		{"negative pid", `{"id":"c","status":"creating","pid":-4}`, "negative"},
		{"relative bundle", `{"id":"c","status":"creating","pid":4,"bundle":"b"}`, "absolute"},
		{"two values", `{"id":"c"} {"id":"d"}`, "more than one"},
		{"wrong type", `{"id":5}`, "not an OCI state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := oci.ReadState(strings.NewReader(tc.in))
			if tc.errHas == "" {
				if err != nil || st.ID != "c1" {
					t.Fatalf("ReadState: %v, %+v", err, st)
				}
				return
			}
			var ie *oci.InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("want an InputError saying %q, got %v", tc.errHas, err)
			}
			if hook.ExitCode(err, config.FailOpen) != 2 {
				t.Error("bad input must exit 2, whatever the failure mode")
			}
		})
	}
}

func TestStageFor(t *testing.T) {
	for status, want := range map[specs.ContainerState]oci.Stage{
		specs.StateCreating: oci.StageCreate,
		specs.StateCreated:  oci.StageCreate,
		specs.StateStopped:  oci.StagePoststop,
		specs.StateRunning:  "",
		"paused":            "",
		"":                  "",
	} {
		got, err := oci.StageFor(&specs.State{Status: status})
		if got != want || (want == "") != (err != nil) {
			t.Errorf("StageFor(%q) = %q, %v; want %q", status, got, err, want)
		}
	}
}

func TestReadBundle(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"process":{"capabilities":{"bounding":["CAP_KILL","CAP_NET_RAW","CAP_SETUID"],"effective":["CAP_KILL"]}},
	"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/run/netns/x"}]}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := oci.ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.NetnsPath != "/run/netns/x" {
		t.Errorf("netns path = %q", b.NetnsPath)
	}
	for _, tc := range []struct {
		allowUids bool
		want      []string
	}{
		{false, []string{"CAP_NET_RAW"}},
		// With allowUids, SETUID becomes an allowed uid.
		{true, []string{"CAP_NET_RAW", "CAP_SETUID"}},
	} {
		if got := b.DangerousCaps(tc.allowUids); !slices.Equal(got, tc.want) {
			t.Errorf("dangerous caps (allowUids %v) = %v, want %v", tc.allowUids, got, tc.want)
		}
	}
	if _, err := oci.ReadBundle(t.TempDir()); err == nil {
		t.Error("a bundle without config.json must be an error")
	}
}
