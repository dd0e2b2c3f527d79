// SPDX-License-Identifier: Apache-2.0

package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/fserr"
)

// A bundle's config.json is edited as raw JSON rather than decoded into the
// runtime-spec types: a field this build's runtime-spec does not know (a
// newer spec, a runtime's extension) must survive the edit. Only the hook
// arrays are touched; keys are written back sorted and indented with tabs.

// PatchBundle registers t in the bundle at dir: createRuntime runs
// `create`, poststop runs `poststop`. Any earlier registration of the hook,
// in any stage, is replaced, so running it again changes nothing. It
// reports whether config.json changed.
func PatchBundle(dir string, t Registration) (changed bool, err error) {
	if err := t.Check(""); err != nil {
		return false, err
	}
	return editBundle(dir, t.Binary, map[string]any{
		"createRuntime": t.Hook(SubCreate),
		"poststop":      t.Hook(SubPoststop),
	})
}

// UnpatchBundle removes every hook that runs bypass-hook (binary, or any
// file named bypass-hook) from the bundle at dir. It reports whether
// config.json changed.
func UnpatchBundle(dir, binary string) (changed bool, err error) {
	return editBundle(dir, binary, nil)
}

// editConfigJSON lets edit change the top-level keys of the config.json of
// the bundle at dir, and writes the file back (atomically, its mode kept)
// where that changed anything; every key edit leaves alone is kept as it
// was written. It reports whether config.json changed.
func editConfigJSON(dir string, edit func(path string, top map[string]json.RawMessage) error) (bool, error) {
	path := filepath.Join(dir, "config.json")
	st, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("%s: %w (is %s an OCI bundle? `runc spec` makes one)", path, fserr.Cause(err), dir)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(orig, &top); err != nil || top == nil {
		return false, fmt.Errorf("%s is not a JSON object: %v", path, err)
	}
	before, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return false, err
	}
	if err := edit(path, top); err != nil {
		return false, err
	}
	after, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return false, err
	}
	if bytes.Equal(before, after) {
		return false, nil
	}
	return true, writeFileAtomic(path, append(after, '\n'), st.Mode().Perm())
}

func editBundle(dir, binary string, add map[string]any) (bool, error) {
	return editConfigJSON(dir, func(path string, top map[string]json.RawMessage) error {
		return editHooks(path, top, binary, add)
	})
}

// editHooks takes every hook of bypass-hook out of top's hooks and adds add.
func editHooks(path string, top map[string]json.RawMessage, binary string, add map[string]any) error {
	hooks := map[string]json.RawMessage{}
	if raw, ok := top["hooks"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &hooks); err != nil {
			return fmt.Errorf("%s: hooks: %w", path, err)
		}
	}
	for _, stage := range hookStages {
		entries, err := withoutOurs(hooks[stage], binary)
		if err != nil {
			return fmt.Errorf("%s: hooks.%s: %w", path, stage, err)
		}
		if h, ok := add[stage]; ok {
			b, err := json.Marshal(h)
			if err != nil {
				return err
			}
			entries = append(entries, b)
		}
		if len(entries) == 0 {
			delete(hooks, stage)
			continue
		}
		if hooks[stage], err = json.Marshal(entries); err != nil {
			return err
		}
	}
	if len(hooks) == 0 {
		delete(top, "hooks")
		return nil
	}
	var err error
	top["hooks"], err = json.Marshal(hooks)
	return err
}

// withoutOurs returns the entries of one hook stage that do not run
// bypass-hook, each kept as it was written.
func withoutOurs(raw json.RawMessage, binary string) ([]json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, err
	}
	var kept []json.RawMessage
	for _, e := range entries {
		var h struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal(e, &h); err != nil {
			return nil, err
		}
		if h.Path == "" {
			return nil, errors.New("a hook has no path")
		}
		if !IsOurs(h.Path, binary) {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

// BundleAnnotations returns the annotations of the bundle at dir, as the
// runtime will pass them to the hook.
func BundleAnnotations(dir string) (map[string]string, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, fserr.Cause(err))
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: annotations: %v", path, err)
	}
	return spec.Annotations, nil
}

// AnnotateBundle opts the bundle at dir in under selection: annotated: it
// sets bypass-hook.io/enabled to "true", in place of that key in any case
// of letters, and keeps every other annotation and key as it was. It
// reports whether config.json changed.
func AnnotateBundle(dir string) (changed bool, err error) {
	return editConfigJSON(dir, annotate)
}

// annotate sets bypass-hook.io/enabled to "true" in top's annotations.
func annotate(path string, top map[string]json.RawMessage) error {
	annotations := map[string]json.RawMessage{}
	if raw, ok := top["annotations"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &annotations); err != nil {
			return fmt.Errorf("%s: annotations: %w", path, err)
		}
	}
	for k := range annotations {
		if canonical, _ := config.ClassifyAnnotationKey(k); canonical == config.AnnEnabled {
			delete(annotations, k)
		}
	}
	annotations[config.AnnEnabled] = json.RawMessage(`"true"`)
	var err error
	top["annotations"], err = json.Marshal(annotations)
	return err
}
