// SPDX-License-Identifier: Apache-2.0

package wrapper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"syscall"

	"github.com/bypass-hook/bypass-hook/config"
)

// maxSpecSize bounds the config.json read: a spec is kilobytes; an engine
// that writes megabytes of environment still fits.
const maxSpecSize = 64 << 20

// Hook is one OCI hook entry, as config.json spells it.
type Hook struct {
	Path    string   `json:"path"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Timeout *int     `json:"timeout,omitempty"`
}

// Hooks are what the wrapper adds to a selected container's config.json:
// the hook binary's create stage at createRuntime (the container process
// exists, in its namespaces, before the workload's first instruction) and
// its poststop stage.
type Hooks struct {
	Binary string // absolute path of bypass-hook-oci
	Config string // the config the hook is pointed at; "" for its default
}

// hookPATH is given to the hook: it finds its tools by absolute path, but
// what it starts (iptables' modprobe) may need one.
const hookPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// hookTimeout is the seconds a runtime lets one hook stage run, as the other
// registrations write it.
const hookTimeout = 10

func (h Hooks) entry(stage string) Hook {
	args := []string{h.Binary}
	env := []string{hookPATH}
	if h.Config != "" {
		args = append(args, "--config", h.Config)
		env = append(env, config.EnvVar+"="+h.Config)
	}
	t := hookTimeout
	return Hook{Path: h.Binary, Args: append(args, stage), Env: env, Timeout: &t}
}

// spec is the part of config.json the decision reads.
type spec struct {
	Process *struct {
		Env []string `json:"env"`
	} `json:"process"`
	Annotations map[string]string `json:"annotations"`
}

// Outcome says what Prepare did to a bundle.
type Outcome struct {
	Fence   bool   // the config selects the container
	Reason  string // why not, when not
	Changed bool   // config.json was written
}

// Prepare decides from cfg and the container's opt-in (annotations and the
// environment variables of its spec) whether the container in the bundle at
// dir is fenced, and if so writes the hooks (and the annotations its
// variables stand for, which the hook reads from the OCI state) into
// config.json: atomically, and only what is not there already, so that a
// second create of the same bundle changes nothing. A refusal (a near miss,
// a widening) is an error: the container must not start.
func Prepare(dir string, cfg *config.Config, h Hooks) (Outcome, error) {
	return PrepareSpec(filepath.Join(dir, "config.json"), cfg, h)
}

// PrepareSpec is Prepare for the spec file at path (crun's --config names
// one other than the bundle's config.json).
func PrepareSpec(path string, cfg *config.Config, h Hooks) (Outcome, error) {
	data, perm, err := readSpec(path)
	if err != nil {
		return Outcome{}, err
	}
	var s spec
	if err := json.Unmarshal(data, &s); err != nil {
		return Outcome{}, fmt.Errorf("%s: %w", path, err)
	}
	var env []string
	if s.Process != nil {
		env = s.Process.Env
	}
	dec, annotations, err := cfg.DecideEnv(s.Annotations, env)
	if err != nil {
		return Outcome{}, err
	}
	if !dec.Fence {
		return Outcome{Reason: dec.Reason}, nil
	}
	edited, changed, err := addHooks(data, annotations, h)
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: %w", path, err)
	}
	if changed {
		if err := writeAtomic(path, edited, perm); err != nil {
			return Outcome{}, err
		}
	}
	return Outcome{Fence: true, Changed: changed}, nil
}

func readSpec(path string) ([]byte, os.FileMode, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("the bundle's config.json: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxSpecSize {
		return nil, 0, fmt.Errorf("%s is larger than %d MiB", path, maxSpecSize>>20)
	}
	return data, st.Mode().Perm(), nil
}

// addHooks returns config.json with h's hooks in createRuntime and poststop
// where no hook of the same binary is there yet, and with annotations set.
// Only those keys are touched; every other key (a newer spec's, a runtime's
// extension) is kept as it was.
func addHooks(data []byte, annotations map[string]string, h Hooks) ([]byte, bool, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, false, fmt.Errorf("not a JSON object: %v", err)
	}
	changed := false

	var have map[string]string
	if raw, ok := top["annotations"]; ok {
		if err := json.Unmarshal(raw, &have); err != nil {
			return nil, false, fmt.Errorf("annotations: %w", err)
		}
	}
	if len(annotations) > 0 && !maps.Equal(have, annotations) {
		b, err := marshal(annotations)
		if err != nil {
			return nil, false, err
		}
		top["annotations"], changed = b, true
	}

	hooks := map[string]json.RawMessage{}
	if raw, ok := top["hooks"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &hooks); err != nil {
			return nil, false, fmt.Errorf("hooks: %w", err)
		}
	}
	for _, stage := range []struct{ key, sub string }{{"createRuntime", "create"}, {"poststop", "poststop"}} {
		var entries []json.RawMessage
		if raw, ok := hooks[stage.key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, false, fmt.Errorf("hooks.%s: %w", stage.key, err)
			}
		}
		present := false
		for _, e := range entries {
			var got Hook
			if err := json.Unmarshal(e, &got); err != nil {
				return nil, false, fmt.Errorf("hooks.%s: %w", stage.key, err)
			}
			present = present || isHook(got.Path, h.Binary)
		}
		if present {
			continue
		}
		b, err := marshal(h.entry(stage.sub))
		if err != nil {
			return nil, false, err
		}
		if hooks[stage.key], err = marshal(append(entries, b)); err != nil {
			return nil, false, err
		}
		changed = true
	}
	if !changed {
		return data, false, nil
	}
	b, err := marshal(hooks)
	if err != nil {
		return nil, false, err
	}
	top["hooks"] = b
	out, err := marshal(top)
	return out, true, err
}

// marshal is json.Marshal without the escaping of <, > and & meant for
// HTML: a spec's strings are written back as they were.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// isHook tells whether a hook at path is the hook the wrapper would add:
// binary itself or the same file (a CDI device's hook, an earlier create of
// the same bundle). A file of the same name elsewhere is not taken for it:
// whatever put it there, the container still gets the hook the wrapper's
// config stands behind (two fences of one policy join; nothing is lost).
func isHook(path, binary string) bool {
	if path == binary {
		return true
	}
	a, errA := os.Stat(path)
	b, errB := os.Stat(binary)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// writeAtomic replaces path with data so that a reader, or a runtime after
// a crash at any moment (SIGKILL included), finds either the old file whole
// or the new one whole: a temporary file in the same directory, synced,
// then renamed over it, and the directory synced.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".config.json.bypass-hook-*")
	if err != nil {
		return fmt.Errorf("writing the bundle's config.json: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	step()
	for rest := data; len(rest) > 0 && err == nil; step() {
		n := min(len(rest), writeChunk)
		_, err = tmp.Write(rest[:n])
		rest = rest[n:]
	}
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	step()
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	step()
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeChunk is how much one write of writeAtomic writes; step is called
// between the steps of the write, where a test kills the writer.
const writeChunk = 64 << 10

var step = func() {}
