// SPDX-License-Identifier: Apache-2.0

package check

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bypass-hook/bypass-hook/install"
)

// runtimeItems report the runtime wrapper's registrations: its entry in
// Docker's daemon.json and in containerd's CRI config. An entry whose
// binary, or the hook beside it, is gone fails every container run with it.
func runtimeItems(p Paths) []Item {
	var items []Item
	for _, r := range []struct {
		name, file string
		find       func(string) (string, bool, error)
		fix        string
	}{
		{install.RegDockerRuntime, p.DaemonJSON, install.DockerRuntime, "bypass-hook install docker-runtime (then systemctl reload docker)"},
		{install.RegContainerdRuntime, p.ContainerdConfig, install.ContainerdRuntime, "bypass-hook install containerd-runtime (then systemctl restart containerd)"},
	} {
		if r.file == "" {
			continue
		}
		bin, ok, err := r.find(r.file)
		switch {
		case err != nil:
			items = append(items, Item{Section: "registration", Name: r.name, Status: Warn,
				Detail: fmt.Sprintf("%v: whether the runtime wrapper is registered cannot be told", err)})
		case ok:
			it := Item{Section: "registration", Name: r.name, Status: OK,
				Detail: fmt.Sprintf("%s: runtime %s: %s", r.file, install.RuntimeName, bin)}
			hook := filepath.Join(filepath.Dir(bin), install.HookBinaryName)
			for _, f := range []string{bin, hook} {
				if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
					it.Status = Fail
					it.Detail += "; " + f + " is MISSING or not executable"
					it.Fix = "every container run with the runtime " + install.RuntimeName + " fails: install bypass-hook-runtime and bypass-hook-oci in one directory, or " + r.fix
				}
			}
			if r.name == install.RegDockerRuntime && install.DockerDefaultRuntime(r.file) {
				it.Detail += " (Docker's default runtime)"
			}
			items = append(items, it)
		}
	}
	return items
}

// engineItems say, for each installed Docker and containerd, which of the
// registrations found it reads, and warn where a registration exists that
// no installed engine can read (a CDI spec with Docker before 25 alone, the
// NRI plugin with containerd 1.6), naming the registration that would work.
func engineItems(p Paths, regs []Item) []Item {
	if p.EngineVersions == nil {
		return nil
	}
	present := map[string]bool{}
	for _, it := range regs {
		switch {
		case it.Section != "registration" || it.Status == Fail:
		case it.Name == "hooks.d":
			present[install.RegHooksDir] = true
		case it.Name == "cdi":
			present[install.RegCDI] = true
		case it.Name == "nri" && it.Status == OK:
			present[install.RegNRI] = true
		case it.Name == install.RegDockerRuntime, it.Name == install.RegContainerdRuntime:
			present[it.Name] = true
		}
	}
	var items []Item
	for _, v := range p.EngineVersions {
		reads := v.Reads()
		var served []string
		for _, r := range reads {
			if present[r] {
				served = append(served, r)
			}
		}
		it := Item{Section: "engines", Name: v.Name, Status: OK,
			Detail: fmt.Sprintf("%s (%s) reads %s", v, v.Binary, strings.Join(reads, ", "))}
		switch {
		case len(served) > 0:
			it.Detail += "; served by " + strings.Join(served, ", ")
		case v.Name == install.EngineDocker:
			it.Status = Warn
			it.Detail += "; NONE of these is registered: no Docker container gets the hook"
			if present[install.RegCDI] {
				it.Detail += " (the CDI spec needs Docker 25 or later)"
			}
			it.Fix = "bypass-hook install docker-runtime, then systemctl reload docker; run containers with --runtime " + install.RuntimeName + " (or add --default)"
		default:
			// containerd also runs Docker's containers, which Docker's
			// registration serves: only Kubernetes pods need one of
			// containerd's own.
			it.Status = Info
			it.Detail += "; none is registered: Kubernetes pods through this containerd get no hook"
			it.Fix = "on a Kubernetes node: " + containerdFix(v)
		}
		items = append(items, it)
	}

	// A registration no installed engine reads fences nothing, in silence.
	readers := func(reg string) bool {
		for _, v := range p.EngineVersions {
			if v.ReadsRegistration(reg) {
				return true
			}
		}
		return false
	}
	podmanOrCRIO := len(p.Engines) > 0 // they read hooks.d and CDI
	if present[install.RegCDI] && !readers(install.RegCDI) && !podmanOrCRIO {
		items = append(items, Item{Section: "engines", Name: "cdi", Status: Warn,
			Detail: "a CDI spec of " + cdiKind + " is installed, but no installed engine reads CDI (" + describeVersions(p.EngineVersions) + "; CDI needs Docker 25+, containerd 1.7+, podman or CRI-O)",
			Fix:    wouldWork(p.EngineVersions)})
	}
	if present[install.RegNRI] && !readers(install.RegNRI) {
		items = append(items, Item{Section: "engines", Name: "nri", Status: Warn,
			Detail: "the NRI plugin is registered, but no installed containerd has NRI (" + describeVersions(p.EngineVersions) + "; NRI needs containerd 1.7+)",
			Fix:    wouldWork(p.EngineVersions)})
	}
	return items
}

func containerdFix(v install.EngineVersion) string {
	if slices.Contains(v.Reads(), install.RegNRI) {
		return "the NRI plugin (docs/install.md); on containerd 1.7 enable NRI in its config"
	}
	return "bypass-hook install containerd-runtime, then systemctl restart containerd, and a RuntimeClass with handler " + install.RuntimeName
}

// wouldWork names the registration each installed engine reads.
func wouldWork(vs []install.EngineVersion) string {
	var out []string
	for _, v := range vs {
		switch v.Name {
		case install.EngineDocker:
			out = append(out, "for "+v.String()+": bypass-hook install docker-runtime")
		case install.EngineContainerd:
			out = append(out, "for "+v.String()+": "+containerdFix(v))
		}
	}
	if len(out) == 0 {
		return "install an engine that reads it, or remove it"
	}
	return strings.Join(out, "; ")
}

func describeVersions(vs []install.EngineVersion) string {
	if len(vs) == 0 {
		return "no Docker or containerd is installed"
	}
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return strings.Join(out, ", ")
}
