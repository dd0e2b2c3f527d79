// SPDX-License-Identifier: Apache-2.0

package install

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The registrations, by the name of the `install` command that writes each.
const (
	RegHooksDir          = "hooks-dir"
	RegCDI               = "cdi"
	RegNRI               = "nri"
	RegDockerRuntime     = "docker-runtime"
	RegContainerdRuntime = "containerd-runtime"
)

// The engines whose version decides what they read.
const (
	EngineDocker     = "Docker"
	EngineContainerd = "containerd"
)

// EngineVersion is an installed Docker or containerd and its version.
type EngineVersion struct {
	Name         string // EngineDocker or EngineContainerd
	Binary       string
	Version      string // as the binary says it; "" when it could not be read
	Major, Minor int
}

func (v EngineVersion) String() string {
	if v.Version == "" {
		return v.Name + " (version unknown, " + v.Binary + ")"
	}
	return fmt.Sprintf("%s %s", v.Name, v.Version)
}

// atLeast reports whether v is major.minor or newer; an unknown version
// counts as new, so that nothing is said against an engine that may read it.
func (v EngineVersion) atLeast(major, minor int) bool {
	if v.Version == "" {
		return true
	}
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Reads lists the registrations v reads, in the order to prefer them.
// Docker reads CDI from 25 (with features.cdi until 28.2); containerd has
// NRI from 1.7 (on by default from 2.0) and CDI from 1.7 (enable_cdi); the
// runtime wrapper serves both at every version (containerd's through its
// CRI config, which containerd 2.x writes as version 3: NRI there).
func (v EngineVersion) Reads() []string {
	switch v.Name {
	case EngineDocker:
		if v.atLeast(25, 0) {
			return []string{RegCDI, RegDockerRuntime}
		}
		return []string{RegDockerRuntime}
	case EngineContainerd:
		switch {
		case v.atLeast(2, 0):
			return []string{RegNRI, RegCDI}
		case v.atLeast(1, 7):
			return []string{RegNRI, RegCDI, RegContainerdRuntime}
		}
		return []string{RegContainerdRuntime}
	}
	return nil
}

// ReadsRegistration reports whether v reads the registration reg.
func (v EngineVersion) ReadsRegistration(reg string) bool { return slices.Contains(v.Reads(), reg) }

var versionRE = regexp.MustCompile(`\bv?(\d+)\.(\d+)(\.\d+)?[^\s,]*`)

// ParseEngineVersion reads the version from what `dockerd --version`
// ("Docker version 20.10.24+dfsg1, build 5d6db84") or `containerd
// --version` ("containerd github.com/containerd/containerd 1.6.20~ds1
// 1.6.20~ds1-1+deb12u3", "containerd containerd.io v2.2.0 ...") print.
func ParseEngineVersion(name, out string) (EngineVersion, bool) {
	v := EngineVersion{Name: name}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return v, false
	}
	v.Version = strings.TrimPrefix(m[0], "v")
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	return v, true
}

var engineBinaries = []struct {
	name  string
	paths []string
}{
	{EngineDocker, []string{"/usr/bin/dockerd", "/usr/sbin/dockerd", "/usr/local/bin/dockerd"}},
	{EngineContainerd, []string{"/usr/bin/containerd", "/usr/sbin/containerd", "/usr/local/bin/containerd"}},
}

// InstalledEngineVersions finds the installed dockerd and containerd and
// asks each for its version (the binary, not the daemon: it need not run).
func InstalledEngineVersions() []EngineVersion {
	var out []EngineVersion
	for _, e := range engineBinaries {
		i := slices.IndexFunc(e.paths, isExecutable)
		if i < 0 {
			continue
		}
		v := EngineVersion{Name: e.name, Binary: e.paths[i]}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := exec.CommandContext(ctx, v.Binary, "--version").Output()
		cancel()
		if err == nil {
			if parsed, ok := ParseEngineVersion(e.name, string(b)); ok {
				parsed.Binary = v.Binary
				v = parsed
			}
		}
		out = append(out, v)
	}
	return out
}
