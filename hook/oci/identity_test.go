// SPDX-License-Identifier: Apache-2.0

package oci

import (
	"strings"
	"testing"
)

func TestIdentityOf(t *testing.T) {
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want Identity
		full string
	}{
		{"containerd container", map[string]string{
			"io.kubernetes.cri.container-type":    "container",
			"io.kubernetes.cri.sandbox-namespace": "team-a",
			"io.kubernetes.cri.sandbox-name":      "agent-7f9c",
			"io.kubernetes.cri.container-name":    "app",
		}, Identity{"team-a", "agent-7f9c", "app"}, "team-a/agent-7f9c/app"},
		{"containerd sandbox: no container name", map[string]string{
			"io.kubernetes.cri.container-type":    "sandbox",
			"io.kubernetes.cri.sandbox-namespace": "team-a",
			"io.kubernetes.cri.sandbox-name":      "agent-7f9c",
		}, Identity{"team-a", "agent-7f9c", ""}, "team-a/agent-7f9c"},
		{"CRI-O container", map[string]string{
			"io.kubernetes.pod.namespace":  "ci",
			"io.kubernetes.pod.name":       "job-1",
			"io.kubernetes.container.name": "build",
			"io.kubernetes.cri-o.Created":  "2026-01-01T00:00:00Z",
		}, Identity{"ci", "job-1", "build"}, "ci/job-1/build"},
		{"CRI-O infra container", map[string]string{
			"io.kubernetes.pod.namespace":  "ci",
			"io.kubernetes.pod.name":       "job-1",
			"io.kubernetes.container.name": "POD",
		}, Identity{"ci", "job-1", "POD"}, "ci/job-1/POD"},
		{"containerd wins over CRI-O keys", map[string]string{
			"io.kubernetes.cri.sandbox-namespace": "a", "io.kubernetes.cri.sandbox-name": "p", "io.kubernetes.cri.container-name": "c",
			"io.kubernetes.pod.namespace": "x", "io.kubernetes.pod.name": "y", "io.kubernetes.container.name": "z",
		}, Identity{"a", "p", "c"}, "a/p/c"},
		{"podman 4.3: no name in the state", map[string]string{
			"io.container.manager":        "libpod",
			"io.kubernetes.cri-o.Created": "2026-12-02T02:05:51Z",
		}, Identity{}, "ID"},
		{"no annotations", nil, Identity{}, "ID"},
		{"namespace without pod name is no identity", map[string]string{
			"io.kubernetes.cri.sandbox-namespace": "team-a",
		}, Identity{}, "ID"},
		{"empty pod name falls through to CRI-O", map[string]string{
			"io.kubernetes.cri.sandbox-name": "",
			"io.kubernetes.pod.namespace":    "ns", "io.kubernetes.pod.name": "p",
		}, Identity{"ns", "p", ""}, "ns/p"},
		{"control characters and spaces dropped", map[string]string{
			"io.kubernetes.cri.sandbox-namespace": "a\nb",
			"io.kubernetes.cri.sandbox-name":      "p\x1b[31m q",
			"io.kubernetes.cri.container-name":    "c\t",
		}, Identity{"ab", "p[31mq", "c"}, "ab/p[31mq/c"},
		{"long names cut", map[string]string{
			"io.kubernetes.cri.sandbox-namespace": "ns",
			"io.kubernetes.cri.sandbox-name":      long,
		}, Identity{"ns", long[:maxName], ""}, "ns/" + long[:maxName]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := IdentityOf(tc.ann)
			if got != tc.want {
				t.Errorf("IdentityOf = %+v, want %+v", got, tc.want)
			}
			if n := got.Name("ID"); n != tc.full {
				t.Errorf("Name = %q, want %q", n, tc.full)
			}
			if got.IsZero() != (tc.want == Identity{}) {
				t.Errorf("IsZero = %v", got.IsZero())
			}
		})
	}
}

func TestCleanCutsRunes(t *testing.T) {
	s := strings.Repeat("a", maxName-1) + "é"
	got := clean(s)
	if len(got) != maxName-1 || !strings.HasPrefix(s, got) {
		t.Errorf("clean cut a rune in two: %q", got[len(got)-3:])
	}
}
