// SPDX-License-Identifier: Apache-2.0

package check

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"sigs.k8s.io/yaml"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/safefile"
)

// cdiKind is the kind of bypass-hook's CDI spec.
const cdiKind = config.CDIKind

// registrationItems lists every registration a runtime would follow to run
// the hook: hooks.d files (podman, CRI-O), CDI specs, the NRI plugin. A
// registration whose binary is gone fails every container start it
// applies to; one that points at another config than the one checked here
// is worth a warning.
func registrationItems(p Paths, cfg *config.Config) []Item {
	var items []Item
	for _, dir := range p.HooksDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			var e install.HooksDirEntry
			data, err := safefile.Read(f, safefile.MaxConfig, safefile.FollowLink)
			if err == nil && yaml.Unmarshal(data, &e) == nil && install.IsOurs(e.Hook.Path, "") {
				it := hookItem("hooks.d", f, e.Hook, cfg, whenOf(e))
				it = hooksDirSelection(it, e, f, cfg)
				if p.Engines != nil && len(install.Readers("", dir, p.Engines)) == 0 && it.Status != Fail {
					// podman 4.3 reads only /usr/share/containers/oci/hooks.d:
					// a file in /etc's fences nothing, in silence.
					it.Status = Warn
					it.Detail += "; NO installed engine reads " + dir
					if len(p.Engines) > 0 {
						it.Detail += " (" + install.DescribeEngines(p.Engines) + ")"
					}
					it.Fix = "bypass-hook install hooks-dir (with no DIR: where the engines read), then remove " + f
				}
				items = append(items, it)
			}
		}
	}
	for _, dir := range p.CDIDirs {
		for _, pattern := range []string{"*.json", "*.yaml"} {
			files, _ := filepath.Glob(filepath.Join(dir, pattern))
			for _, f := range files {
				items = append(items, cdiItems(f, cfg)...)
				items = append(items, cdiDevices(f)...)
			}
		}
	}
	items = append(items, nriItems(p)...)
	items = append(items, nriConfigs(p, cfg)...)
	items = append(items, runtimeItems(p)...)
	if len(items) == 0 || onlyInfo(items) {
		items = append(items, Item{Section: "registration", Name: "none", Status: Warn,
			Detail: "no hooks.d file, CDI spec, NRI plugin or runtime wrapper runs bypass-hook: no container gets the hook",
			Fix:    "bypass-hook install hooks-dir (podman, CRI-O), install cdi (Docker 25+, podman, containerd 1.7+), install docker-runtime (any Docker), install containerd-runtime (containerd 1.6/1.7), or the NRI plugin (containerd 1.7+, Kubernetes)"})
	}
	return items
}

func onlyInfo(items []Item) bool {
	for _, it := range items {
		if it.Status != Info {
			return false
		}
	}
	return true
}

func whenOf(e install.HooksDirEntry) string {
	if e.When.Always != nil && *e.When.Always {
		return "always"
	}
	if len(e.When.Annotations) > 0 {
		return "annotated"
	}
	return "when: other"
}

// hookItem checks one hook entry: its binary, its config, its stages.
func hookItem(kind, file string, h specs.Hook, cfg *config.Config, detail string) Item {
	it := Item{Section: "registration", Name: kind, Status: OK}
	cfgArg := argAfter(h.Args, "--config")
	parts := []string{file, h.Path}
	if fi, err := os.Stat(h.Path); err != nil || fi.Mode()&0o111 == 0 || !fi.Mode().IsRegular() {
		it.Status = Fail
		it.Fix = "the runtime fails every container this registration applies to: install the binary there, or write the registration again (bypass-hook install ...)"
		parts[1] += " (MISSING or not executable)"
	}
	if cfgArg != "" {
		parts = append(parts, "config "+cfgArg)
		if _, err := os.Stat(cfgArg); err != nil {
			it.Status = Fail
			it.Fix = "the hook is told to read " + cfgArg + ", which does not exist: every container it applies to fails"
		} else if cfg != nil && cfg.Path != "" && !sameFile(cfgArg, cfg.Path) && it.Status == OK {
			it.Status = Warn
			it.Fix = "this registration runs the hook with " + cfgArg + ", not " + cfg.Path + " that this check read: check that one with --config " + cfgArg
		}
	}
	if detail != "" {
		parts = append(parts, detail)
	}
	it.Detail = strings.Join(parts, ": ")
	return it
}

// cdiItems checks a CDI spec file if it is of our kind.
func cdiItems(file string, cfg *config.Config) []Item {
	data, err := safefile.Read(file, safefile.MaxConfig, safefile.FollowLink)
	if err != nil || !bytes.Contains(data, []byte(cdiKind)) {
		return nil
	}
	var spec struct {
		Kind    string `json:"kind"`
		Devices []struct {
			Name           string `json:"name"`
			ContainerEdits struct {
				Hooks []struct {
					HookName string   `json:"hookName"`
					Path     string   `json:"path"`
					Args     []string `json:"args"`
				} `json:"hooks"`
			} `json:"containerEdits"`
		} `json:"devices"`
	}
	if err := yaml.Unmarshal(data, &spec); err != nil {
		return []Item{{Section: "registration", Name: "cdi", Status: Fail, Detail: fmt.Sprintf("%s: %v", file, err),
			Fix: "runtimes refuse a container that requests a device of a spec they cannot read: write it again with bypass-hook install cdi"}}
	}
	if spec.Kind != cdiKind {
		return nil
	}
	var items []Item
	for _, d := range spec.Devices {
		for _, h := range d.ContainerEdits.Hooks {
			if h.HookName != "createRuntime" && h.HookName != "prestart" {
				continue
			}
			items = append(items, hookItem("cdi", file, specs.Hook{Path: h.Path, Args: h.Args}, cfg, "device "+cdiKind+"="+d.Name))
		}
	}
	return items
}

// nriItems report the runtime's NRI socket and whether the plugin is there:
// pre-registered (the runtime starts it from its plugin directory) or
// running as an external plugin.
func nriItems(p Paths) []Item {
	var items []Item
	fi, err := os.Stat(p.NRISocket)
	socket := err == nil && fi.Mode()&os.ModeSocket != 0
	pre, _ := filepath.Glob(filepath.Join(p.NRIPluginDir, "*-"+install.BinaryName))
	for _, f := range pre {
		it := Item{Section: "registration", Name: "nri", Status: OK, Detail: f + ": pre-registered; the runtime starts it"}
		if fi, err := os.Stat(f); err != nil || fi.Mode()&0o111 == 0 {
			it.Status, it.Detail = Fail, f+": pre-registered but the binary it names is missing or not executable"
			it.Fix = "install the binary again (bypass-hook install binary " + p.NRIPluginDir + ")"
		}
		items = append(items, it)
	}
	for _, pid := range nriProcesses(p.Proc) {
		exe, _ := os.Readlink(filepath.Join(p.Proc, strconv.Itoa(pid), "exe"))
		it := Item{Section: "registration", Name: "nri", Status: OK, Detail: fmt.Sprintf("plugin running: pid %d, %s", pid, exe)}
		if !socket {
			it.Status, it.Detail = Warn, it.Detail+"; but "+p.NRISocket+" is absent: it cannot connect"
			it.Fix = "enable NRI in the runtime (containerd: [plugins.\"io.containerd.nri.v1.nri\"] disable = false)"
		}
		items = append(items, it)
	}
	switch {
	case socket && len(items) == 0:
		items = append(items, Item{Section: "registration", Name: "nri", Status: Info,
			Detail: p.NRISocket + " is there (NRI is enabled) but no bypass-hook plugin is registered or running",
			Fix:    "on Kubernetes, deploy the DaemonSet; see docs/install.md"})
	case socket:
		items = append(items, Item{Section: "registration", Name: "nri socket", Status: OK, Detail: p.NRISocket})
	}
	return items
}

// nriProcesses finds running `bypass-hook ... nri` processes.
func nriProcesses(proc string) []int {
	var pids []int
	entries, _ := os.ReadDir(proc)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if filepath.Base(args[0]) != install.BinaryName {
			continue
		}
		for _, a := range args[1:] {
			if a == "nri" {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
