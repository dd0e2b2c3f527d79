// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/safefile"
)

// A registration is written for the config of its day, and some of what it
// says is fixed then: a hooks.d file's `when` follows the selection, a CDI
// spec lists the devices of its bypass-hook version. These compare each
// registration with the config its hook would read now, and say what to
// run where they part: a hooks.d file written under selection: annotated
// while the config says all leaves every unannotated container unfenced,
// in silence.

// hooksDirSelection compares the `when` of hooks.d file `file` (entry e,
// checked as it) with what `install hooks-dir` writes for the selection of
// the config the hook reads.
func hooksDirSelection(it Item, e install.HooksDirEntry, file string, checked *config.Config) Item {
	cfg := readsConfig(e.Hook.Args, checked)
	if it.Status == Fail || cfg == nil {
		return it
	}
	reg := install.Registration{Binary: e.Hook.Path, Config: argAfter(e.Hook.Args, "--config")}
	want := install.NewHooksDirEntry(reg, cfg.Selection).When
	if reflect.DeepEqual(e.When, want) {
		return it
	}
	it.Status = Warn
	switch wrote := whenOf(e); {
	case cfg.Selection == config.SelectAll && wrote != "always":
		it.Detail += "; WRITTEN FOR selection: annotated, but the config says selection: all: containers without a bypass-hook annotation never run the hook and start UNFENCED"
	case cfg.Selection == config.SelectAnnotated && wrote == "always":
		it.Detail += "; written for selection: all, but the config says selection: annotated: every container runs the hook, which fences only the annotated ones"
	default:
		it.Detail += "; its `when` is not what this bypass-hook writes for selection: " + cfg.Selection + " (an older version's?)"
	}
	fix := "write it again for the config's selection: bypass-hook install hooks-dir " + filepath.Dir(file) + " --binary " + e.Hook.Path
	if reg.Config != "" {
		fix += " --config " + reg.Config
	}
	it.Fix = fix
	return it
}

// readsConfig is the config a hook of these args reads: the one it is
// told with --config (nil when that cannot be read: hookItem reports it),
// else the one checked.
func readsConfig(args []string, checked *config.Config) *config.Config {
	path := argAfter(args, "--config")
	if path == "" || (checked != nil && checked.Path != "" && sameFile(path, checked.Path)) {
		return checked
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil
	}
	return cfg
}

// cdiDevices compares the devices of CDI spec `file` (of our kind) with
// those this bypass-hook writes, each with its createRuntime and poststop
// hooks: a spec of an older version lacks a device a container may ask for
// (the runtime then refuses the container) or a stage.
func cdiDevices(file string) []Item {
	data, err := safefile.Read(file, safefile.MaxConfig, safefile.FollowLink)
	if err != nil {
		return nil // cdiItems reports a file it cannot read
	}
	var spec struct {
		Kind    string `json:"kind"`
		Devices []struct {
			Name           string `json:"name"`
			ContainerEdits struct {
				Hooks []struct {
					HookName string `json:"hookName"`
				} `json:"hooks"`
			} `json:"containerEdits"`
		} `json:"devices"`
	}
	if yaml.Unmarshal(data, &spec) != nil || spec.Kind != cdiKind {
		return nil // cdiItems reports a spec it cannot read
	}
	var got, want []string
	for _, d := range spec.Devices {
		var stages []string
		for _, h := range d.ContainerEdits.Hooks {
			stages = append(stages, h.HookName)
		}
		got = append(got, d.Name+"("+strings.Join(stages, ",")+")")
	}
	for _, d := range install.NewCDISpec(install.Registration{Binary: "/b"}).Devices {
		var stages []string
		for _, h := range d.ContainerEdits.Hooks {
			stages = append(stages, h.HookName)
		}
		want = append(want, d.Name+"("+strings.Join(stages, ",")+")")
	}
	slices.Sort(got)
	slices.Sort(want)
	if slices.Equal(got, want) {
		return nil
	}
	return []Item{{Section: "registration", Name: "cdi", Status: Warn,
		Detail: file + ": devices " + strings.Join(got, " ") + "; this bypass-hook writes " + strings.Join(want, " "),
		Fix:    "write it again: bypass-hook install cdi " + filepath.Dir(file) + " (--binary, --config as before)"}}
}

// nriConfigs compares the config the NRI plugin reads (its --config, or
// the pre-registered plugin's conf file) with the one checked: the plugin
// selects by its own, and the hooks it injects read it too.
func nriConfigs(p Paths, checked *config.Config) []Item {
	if checked == nil || checked.Path == "" {
		return nil
	}
	var items []Item
	differs := func(what, path string) {
		if path == "" || sameFile(path, checked.Path) {
			return
		}
		items = append(items, Item{Section: "registration", Name: "nri config", Status: Warn,
			Detail: what + " reads " + path + ", not " + checked.Path + " that this check read",
			Fix:    "check that one: bypass-hook check --config " + path})
	}
	for _, pid := range nriProcesses(p.Proc) {
		data, err := os.ReadFile(filepath.Join(p.Proc, strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		path := argAfter(args, "--config")
		if path != "" && !filepath.IsAbs(path) {
			continue // relative to the plugin's directory: not judged
		}
		differs("the NRI plugin (pid "+strconv.Itoa(pid)+")", path)
	}
	confs, _ := filepath.Glob(filepath.Join(p.NRIConfDir, "*-"+install.BinaryName+".conf"))
	for _, f := range confs {
		data, err := safefile.Read(f, safefile.MaxConfig, safefile.FollowLink)
		if err != nil {
			continue
		}
		var pc struct {
			Config string `json:"config"`
		}
		if yaml.Unmarshal(data, &pc) == nil {
			differs("the pre-registered NRI plugin ("+f+")", pc.Config)
		}
	}
	return items
}
