// SPDX-License-Identifier: Apache-2.0

package install

import (
	"slices"
	"testing"
)

func TestEngineVersions(t *testing.T) {
	for _, tc := range []struct {
		name, out, version string
		reads              []string
	}{
		{EngineDocker, "Docker version 20.10.24+dfsg1, build 5d6db84\n", "20.10.24+dfsg1", []string{RegDockerRuntime}},
		{EngineDocker, "Docker version 24.0.7, build 311b9ff", "24.0.7", []string{RegDockerRuntime}},
		{EngineDocker, "Docker version 25.0.0, build 1", "25.0.0", []string{RegCDI, RegDockerRuntime}},
		{EngineDocker, "Docker version 29.0.1, build eedd969", "29.0.1", []string{RegCDI, RegDockerRuntime}},
		{EngineContainerd, "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", "1.6.20~ds1", []string{RegContainerdRuntime}},
		{EngineContainerd, "containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da", "1.7.27", []string{RegNRI, RegCDI, RegContainerdRuntime}},
		{EngineContainerd, "containerd github.com/containerd/containerd/v2 v2.2.0 1c4457e", "2.2.0", []string{RegNRI, RegCDI}},
		{EngineContainerd, "no version here", "", []string{RegNRI, RegCDI}}, // unknown: nothing said against it
	} {
		v, ok := ParseEngineVersion(tc.name, tc.out)
		if ok != (tc.version != "") || v.Version != tc.version {
			t.Errorf("%q: version %q (%v), want %q", tc.out, v.Version, ok, tc.version)
		}
		if got := v.Reads(); !slices.Equal(got, tc.reads) {
			t.Errorf("%s: reads %v, want %v", v, got, tc.reads)
		}
	}
}
