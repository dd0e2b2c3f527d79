// SPDX-License-Identifier: Apache-2.0

package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/internal/fserr"
)

// RuntimeBinaryName is the runtime wrapper's binary, and RuntimeName the
// name under which the engines know it (docker run --runtime bypass-hook,
// a RuntimeClass's handler).
const (
	RuntimeBinaryName = "bypass-hook-runtime"
	RuntimeName       = "bypass-hook"
)

// DaemonJSON is Docker's config file.
const DaemonJSON = "/etc/docker/daemon.json"

// The wrapper's own flags, as its registration passes them (package
// wrapper defines them; install does not link the wrapper).
const (
	wrapperConfigFlag  = "--bypass-hook-config"
	wrapperRuntimeFlag = "--bypass-hook-runtime"
)

// RuntimeRegistration is the runtime wrapper as an engine runs it.
type RuntimeRegistration struct {
	Binary string // absolute path of bypass-hook-runtime
	// Config is the config the wrapper (and so the hook) is pointed at; ""
	// for the default, /etc/bypass-hook/config.yaml.
	Config string
	// Runtime is the real runtime (a name or an absolute path); "" for runc.
	Runtime string
}

// Args are the wrapper's own arguments, which come before the runtime's.
func (r RuntimeRegistration) Args() []string {
	var args []string
	if r.Config != "" {
		args = append(args, wrapperConfigFlag+"="+r.Config)
	}
	if r.Runtime != "" {
		args = append(args, wrapperRuntimeFlag+"="+r.Runtime)
	}
	return args
}

// Check validates r before it is written anywhere.
func (r RuntimeRegistration) Check() error {
	return Registration{Binary: r.Binary, Config: r.Config}.Check("")
}

// DefaultRuntimeBinary is bypass-hook-runtime beside the running executable.
func DefaultRuntimeBinary() (string, error) {
	self, err := Executable()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(self), RuntimeBinaryName), nil
}

// DockerResult says what a daemon.json edit did.
type DockerResult struct {
	Changed bool
	Backup  string // where the file as it was is kept; "" when there was none
	// ReplacedDefault is the default-runtime that --default replaced
	// (another wrapper's, such as nvidia's): --remove does not bring it back.
	ReplacedDefault string
}

// WriteDockerRuntime adds the runtime wrapper to the daemon.json at path as
// runtimes.bypass-hook, and with makeDefault as default-runtime. Every
// other key is kept (the file is rewritten with its keys sorted); the file
// as it was is kept beside it as FILE.bypass-hook.bak. A missing file is
// made.
func WriteDockerRuntime(path string, r RuntimeRegistration, makeDefault bool) (DockerResult, error) {
	if err := r.Check(); err != nil {
		return DockerResult{}, err
	}
	entry := map[string]any{"path": r.Binary}
	if args := r.Args(); len(args) > 0 {
		entry["runtimeArgs"] = args
	}
	replaced := ""
	res, err := editDaemonJSON(path, func(top map[string]json.RawMessage, runtimes map[string]json.RawMessage) error {
		b, err := json.Marshal(entry)
		if err != nil {
			return err
		}
		runtimes[RuntimeName] = b
		if makeDefault {
			var old string
			if json.Unmarshal(top["default-runtime"], &old) == nil && old != "" && old != "runc" && old != RuntimeName {
				replaced = old
			}
			top["default-runtime"], _ = json.Marshal(RuntimeName)
		}
		return nil
	})
	res.ReplacedDefault = replaced
	return res, err
}

// RemoveDockerRuntime takes the runtime wrapper out of the daemon.json at
// path, and default-runtime where it names it (Docker refuses to start
// with a default runtime it does not know). Where nothing else changed
// since the install, the file is as it was to the byte: the backup's text
// (its order of keys and its spacing), or no file where the install made it.
func RemoveDockerRuntime(path string) (DockerResult, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return DockerResult{}, nil
	}
	before, hadBackup := daemonJSONBefore(path + ".bypass-hook.bak")
	res, err := editDaemonJSON(path, withoutDockerRuntime)
	if err != nil || !res.Changed {
		return res, err
	}
	now, err := os.ReadFile(path)
	if err != nil {
		return res, err
	}
	switch {
	case hadBackup && sameJSON(now, before):
		return res, writeFileAtomic(path, before, modeOf(path))
	case !hadBackup && sameJSON(now, []byte("{}")):
		return res, os.Remove(path) // the install made it
	}
	return res, nil
}

// withoutDockerRuntime is the edit of daemon.json that --remove makes.
func withoutDockerRuntime(top, runtimes map[string]json.RawMessage) error {
	delete(runtimes, RuntimeName)
	var def string
	if json.Unmarshal(top["default-runtime"], &def) == nil && def == RuntimeName {
		delete(top, "default-runtime")
	}
	return nil
}

// daemonJSONBefore is the text of the backup at path when it is a
// daemon.json as it was before an install: valid, with nothing of ours.
func daemonJSONBefore(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var top struct {
		Runtimes map[string]json.RawMessage `json:"runtimes"`
		Default  string                     `json:"default-runtime"`
	}
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &top) != nil {
		return nil, false
	}
	_, ours := top.Runtimes[RuntimeName]
	return b, !ours && top.Default != RuntimeName
}

// sameJSON tells whether the daemon.json texts a and b say the same to
// Docker: an empty text is an empty object, and so is an empty runtimes
// (which an edit drops).
func sameJSON(a, b []byte) bool {
	canon := func(text []byte) ([]byte, bool) {
		top := map[string]any{}
		if len(bytes.TrimSpace(text)) > 0 && json.Unmarshal(text, &top) != nil {
			return nil, false
		}
		if rts, ok := top["runtimes"].(map[string]any); ok && len(rts) == 0 {
			delete(top, "runtimes")
		}
		c, err := json.Marshal(top)
		return c, err == nil
	}
	ca, okA := canon(a)
	cb, okB := canon(b)
	return okA && okB && bytes.Equal(ca, cb)
}

// modeOf is the permission bits of the file at path, 0644 when it has none.
func modeOf(path string) os.FileMode {
	if st, err := os.Stat(path); err == nil {
		return st.Mode().Perm()
	}
	return 0o644
}

// DockerDefaultRuntime reports whether the daemon.json at path makes the
// wrapper Docker's default runtime.
func DockerDefaultRuntime(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var top struct {
		Default string `json:"default-runtime"`
	}
	return json.Unmarshal(data, &top) == nil && top.Default == RuntimeName
}

// DockerRuntime returns the binary of the wrapper's entry in the
// daemon.json at path, and whether there is one.
func DockerRuntime(path string) (binary string, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var top struct {
		Runtimes map[string]struct {
			Path string `json:"path"`
		} `json:"runtimes"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	rt, ok := top.Runtimes[RuntimeName]
	return rt.Path, ok, nil
}

func editDaemonJSON(path string, edit func(top, runtimes map[string]json.RawMessage) error) (DockerResult, error) {
	orig, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return DockerResult{}, fmt.Errorf("reading %s: %w", path, fserr.Cause(err))
	}
	top := map[string]json.RawMessage{}
	if exists && len(bytes.TrimSpace(orig)) > 0 {
		if err := json.Unmarshal(orig, &top); err != nil || top == nil {
			return DockerResult{}, fmt.Errorf("%s is not a JSON object (%v): Docker cannot read it either; fix it first", path, err)
		}
	}
	runtimes := map[string]json.RawMessage{}
	if raw, ok := top["runtimes"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &runtimes); err != nil {
			return DockerResult{}, fmt.Errorf("%s: runtimes: %w", path, err)
		}
	}
	before, err := json.Marshal(top)
	if err != nil {
		return DockerResult{}, err
	}
	if err := edit(top, runtimes); err != nil {
		return DockerResult{}, err
	}
	if len(runtimes) == 0 {
		delete(top, "runtimes")
	} else if top["runtimes"], err = json.Marshal(runtimes); err != nil {
		return DockerResult{}, err
	}
	after, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return DockerResult{}, err
	}
	if compact, _ := json.Marshal(top); bytes.Equal(before, compact) {
		return DockerResult{}, nil
	}
	res := DockerResult{Changed: true}
	mode := os.FileMode(0o644)
	if exists {
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
		res.Backup = path + ".bypass-hook.bak"
		if err := writeFileAtomic(res.Backup, orig, mode); err != nil {
			return DockerResult{}, fmt.Errorf("keeping a backup of %s: %w", path, err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return DockerResult{}, err
	}
	return res, writeFileAtomic(path, append(after, '\n'), mode)
}
