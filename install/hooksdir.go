// SPDX-License-Identifier: Apache-2.0

package install

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
)

// HooksDirFileName is the file `install hooks-dir` writes. podman and CRI-O
// read every *.json in their hooks directories, in name order.
const HooksDirFileName = "bypass-hook.json"

// HooksDirVersion is the hooks.d schema version written (see oci-hooks(5)).
const HooksDirVersion = "1.0.0"

// Hooks directories that podman and CRI-O read by default; files in the
// second mask files of the same name in the first.
const (
	HooksDirPackage  = "/usr/share/containers/oci/hooks.d"
	HooksDirOverride = "/etc/containers/oci/hooks.d"
)

// HooksDirEntry is one hooks.d file, schema 1.0.0.
type HooksDirEntry struct {
	Version string     `json:"version"`
	Hook    specs.Hook `json:"hook"`
	When    When       `json:"when"`
	Stages  []string   `json:"stages"`
}

// When says which containers get the hook. All conditions set must match.
type When struct {
	Always *bool `json:"always,omitempty"`
	// Annotations maps a regular expression on annotation keys to one on
	// their values.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// AnnotatedWhen is the condition written under selection: annotated: the
// container has an annotation whose key holds "bypass" or "hook" in any
// case. The hook itself then decides: it fences enabled=true in any case
// of the key, passes over enabled=false and keys of others, and refuses a
// misspelt key or value and a near miss of the prefix
// (bypass-hook.io.enabled, bypass_hook.io/…), which a narrower match would
// let start unfenced in silence. A key that misspells both words is the one
// typo the hook never sees here.
var AnnotatedWhen = When{Annotations: map[string]string{
	annotatedKeyPattern: ".*",
}}

const annotatedKeyPattern = "(?i)bypass|hook"

// NewHooksDirEntry builds the hooks.d entry for t under the config's
// selection: every container for selection: all, where the hook itself
// then decides; for selection: annotated only containers with one of our
// annotations, so that the others never start the hook at all.
//
// The `when` is fixed when the file is written: after changing selection
// in the config, write the file again.
func NewHooksDirEntry(t Registration, selection string) HooksDirEntry {
	when := AnnotatedWhen
	if selection != config.SelectAnnotated {
		always := true
		when = When{Always: &always}
	}
	return HooksDirEntry{
		Version: HooksDirVersion,
		Hook:    t.Hook(SubHook),
		When:    when,
		// createRuntime: the namespace exists and the workload has not run
		// yet. poststop: podman and CRI-O run it when the container is
		// removed.
		Stages: []string{"createRuntime", "poststop"},
	}
}

// Marshal renders the entry as written to disk.
func (e HooksDirEntry) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteHooksDir checks t and writes its hooks.d entry into dir, which it
// makes if needed. root is as for Registration.Check (and the file goes to
// root/dir). It returns the path written.
func WriteHooksDir(root, dir string, t Registration, selection string) (string, error) {
	if err := t.Check(root); err != nil {
		return "", err
	}
	data, err := NewHooksDirEntry(t, selection).Marshal()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(root, dir, HooksDirFileName)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("making hooks directory: %w", err)
	}
	return dst, writeFileAtomic(dst, data, 0o644)
}

// writeFileAtomic replaces path with data in one rename, so that a runtime
// that watches the directory (podman, CRI-O) or a hook that runs now never
// reads half a file. The temporary name does not end in .json: hooks.d
// and CDI readers skip it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return writeFileAtomicChecked(path, data, mode, nil)
}

// writeFileAtomicChecked is writeFileAtomic with check run on the written
// temporary file before the rename; an error leaves path as it was.
func writeFileAtomicChecked(path string, data []byte, mode os.FileMode, check func(tmp string) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && check != nil {
		err = check(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
