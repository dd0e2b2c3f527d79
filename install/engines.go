// SPDX-License-Identifier: Apache-2.0

package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Engine is a container engine that reads hooks.d files (podman, CRI-O),
// and the directories it reads them from. A hooks.d file in a directory no
// engine reads fences nothing, in silence: `install hooks-dir` writes only
// where an engine reads.
type Engine struct {
	Name   string // "podman", "CRI-O"
	Binary string // where it is installed; "" when assumed (packaging under --root)
	// Dirs are the hooks directories it reads, in the order its config
	// lists them (a file in a later one masks one of the same name in an
	// earlier one).
	Dirs []string
	// From says where Dirs come from: the config file that set hooks_dir,
	// or its built-in default.
	From string
}

// engineKind says where an engine is installed and where it keeps its
// hooks_dir. Only the system-wide files count: a rootless user's
// $HOME/.config/containers/containers.conf is that user's, not the host's.
type engineKind struct {
	name     string
	binaries []string
	// configs are files and drop-in globs, in the order the engine reads
	// them; a later file's hooks_dir replaces an earlier one's. podman
	// reads only *.conf drop-ins, CRI-O every file of crio.conf.d.
	configs  []string
	key      []string // where hooks_dir is in the TOML
	defaults []string // hooks_dir when no file sets it
}

// engineKinds are the engines that read hooks.d. podman 4.3 (Debian 12)
// reads containers.conf from /usr/share, /etc and /etc's containers.conf.d
// (containers.conf(5)), and with no hooks_dir set reads only
// /usr/share/containers/oci/hooks.d: `podman --log-level=debug run` says
// "reading hooks from". CRI-O reads crio.conf and crio.conf.d, with the
// same default. A CONTAINERS_CONF in one shell's environment is not the
// host's config and is not read.
var engineKinds = []engineKind{
	{
		name:     "podman",
		binaries: []string{"/usr/bin/podman", "/usr/local/bin/podman"},
		configs: []string{
			"/usr/share/containers/containers.conf",
			"/etc/containers/containers.conf",
			"/etc/containers/containers.conf.d/*.conf",
		},
		key:      []string{"engine", "hooks_dir"},
		defaults: []string{HooksDirPackage},
	},
	{
		name:     "CRI-O",
		binaries: []string{"/usr/bin/crio", "/usr/local/bin/crio"},
		configs:  []string{"/etc/crio/crio.conf", "/etc/crio/crio.conf.d/*"},
		key:      []string{"crio", "runtime", "hooks_dir"},
		defaults: []string{HooksDirPackage},
	},
}

// ConfigFile is one config file as read.
type ConfigFile struct {
	Path string
	Data []byte
}

// HooksDirsFrom returns the hooks_dir at key that files set, read in order
// (a later file's setting wins), or defaults when none sets it. from names
// the file whose setting won, or says it is the default.
func HooksDirsFrom(files []ConfigFile, key, defaults []string) (dirs []string, from string, err error) {
	dirs, from = slices.Clone(defaults), "the built-in default"
	for _, f := range files {
		var doc map[string]any
		if _, err := toml.Decode(string(f.Data), &doc); err != nil {
			return nil, "", fmt.Errorf("%s: %w (the engine cannot read it either)", f.Path, err)
		}
		v, ok := lookup(doc, key)
		if !ok {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			return nil, "", fmt.Errorf("%s: %s is not a list of directories", f.Path, strings.Join(key, "."))
		}
		dirs = dirs[:0:0]
		for _, d := range list {
			s, ok := d.(string)
			if !ok {
				return nil, "", fmt.Errorf("%s: %s holds %v, not a directory", f.Path, strings.Join(key, "."), d)
			}
			dirs = append(dirs, filepath.Clean(s))
		}
		from = f.Path
	}
	return dirs, from, nil
}

func lookup(doc map[string]any, key []string) (any, bool) {
	var v any = doc
	for _, k := range key {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// InstalledEngines returns the engines installed on this host with the
// hooks directories each reads. With root set (packaging into a DESTDIR),
// every engine counts as installed, since the package is for another
// host, and its config files are read under root.
func InstalledEngines(root string) ([]Engine, error) {
	var out []Engine
	for _, k := range engineKinds {
		e := Engine{Name: k.name}
		if root == "" {
			i := slices.IndexFunc(k.binaries, isExecutable)
			if i < 0 {
				continue
			}
			e.Binary = k.binaries[i]
		}
		files, err := readConfigs(root, k.configs)
		if err != nil {
			return nil, fmt.Errorf("%s's config: %w", k.name, err)
		}
		if e.Dirs, e.From, err = HooksDirsFrom(files, k.key, k.defaults); err != nil {
			return nil, fmt.Errorf("%s's config: %w", k.name, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// readConfigs reads the regular files that exist of patterns, globs
// expanded in name order; the paths returned are as the engine sees them
// (without root).
func readConfigs(root string, patterns []string) ([]ConfigFile, error) {
	var out []ConfigFile
	for _, p := range patterns {
		matches, err := filepath.Glob(filepath.Join(root, p))
		if err != nil {
			return nil, err
		}
		slices.Sort(matches)
		for _, m := range matches {
			if st, err := os.Stat(m); err != nil || !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(m)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			rel, _ := filepath.Rel(filepath.Join("/", root), m)
			out = append(out, ConfigFile{Path: filepath.Join("/", rel), Data: data})
		}
	}
	return out, nil
}

// DefaultHooksDirs picks where `install hooks-dir` with no DIR writes: the
// first directory of each installed engine (one file serves both when they
// share it, as podman and CRI-O do by default).
func DefaultHooksDirs(engines []Engine) ([]string, error) {
	if len(engines) == 0 {
		return nil, fmt.Errorf("neither podman nor CRI-O is installed (looked for %s): no engine would read a hooks.d file; name DIR and pass --force to write one anyway", strings.Join(allBinaries(), ", "))
	}
	var dirs []string
	for _, e := range engines {
		if len(e.Dirs) == 0 {
			return nil, fmt.Errorf("%s reads no hooks directory (hooks_dir is empty in %s): set one there, then run this again", e.Name, e.From)
		}
		if !slices.Contains(dirs, e.Dirs[0]) {
			dirs = append(dirs, e.Dirs[0])
		}
	}
	return dirs, nil
}

// Readers returns the engines that read dir (root as for WriteHooksDir).
func Readers(root, dir string, engines []Engine) []Engine {
	var out []Engine
	for _, e := range engines {
		if slices.ContainsFunc(e.Dirs, func(d string) bool { return sameDir(root, d, dir) }) {
			out = append(out, e)
		}
	}
	return out
}

// CheckHooksDir refuses dir when no installed engine reads it: a hook file
// there would fence nothing, in silence. It returns the engines that do.
func CheckHooksDir(root, dir string, engines []Engine) ([]Engine, error) {
	readers := Readers(root, dir, engines)
	if len(readers) > 0 {
		return readers, nil
	}
	if len(engines) == 0 {
		return nil, fmt.Errorf("no engine reads %s: neither podman nor CRI-O is installed (looked for %s); pass --force to write it anyway", dir, strings.Join(allBinaries(), ", "))
	}
	return nil, fmt.Errorf("no installed engine reads %s, so a hook file there would fence nothing: %s. Run `bypass-hook install hooks-dir` without DIR to write where they read, add %s to hooks_dir in their config, or pass --force to write it anyway",
		dir, DescribeEngines(engines), dir)
}

// DescribeEngines says which directories each engine reads, and why.
func DescribeEngines(engines []Engine) string {
	var parts []string
	for _, e := range engines {
		parts = append(parts, fmt.Sprintf("%s reads %s (from %s)", e.Name, strings.Join(e.Dirs, ", "), e.From))
	}
	return strings.Join(parts, "; ")
}

// Masking returns files named like ours in other directories of the
// engines that read dir: an engine reads both, and one masks the other.
func Masking(root, dir string, engines []Engine) []string {
	var out []string
	for _, e := range Readers(root, dir, engines) {
		for _, d := range e.Dirs {
			p := filepath.Join(d, HooksDirFileName)
			if sameDir(root, d, dir) || slices.Contains(out, p) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// sameDir tells whether a and b name one directory: equal clean paths, or
// the same directory reached through a symlink.
func sameDir(root, a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(filepath.Join(root, a))
	sb, errB := os.Stat(filepath.Join(root, b))
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

func allBinaries() []string {
	var out []string
	for _, k := range engineKinds {
		out = append(out, k.binaries...)
	}
	return out
}
