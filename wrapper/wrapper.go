// SPDX-License-Identifier: Apache-2.0

package wrapper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
)

// EnvRuntime names the real runtime where the registration passes no
// --bypass-hook-runtime (containerd gives a runtime no arguments).
const EnvRuntime = "BYPASS_HOOK_RUNTIME"

// DefaultRuntime is the real runtime unless told otherwise.
const DefaultRuntime = "runc"

// HookName is the hook binary's name; the wrapper looks for it beside
// itself.
const HookName = "bypass-hook-oci"

// searchDirs are where a runtime given by name is looked for. The engine
// may give the wrapper an empty PATH, and a PATH that the engine's caller
// controls must not choose the binary that runs every container.
var searchDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// FindRuntime returns the absolute path of the real runtime: name is an
// absolute path, or a name looked for in the system's binary directories.
// self, the wrapper's own path, is refused: it would call itself forever.
func FindRuntime(name, self string) (string, error) {
	if name == "" {
		name = DefaultRuntime
	}
	var path string
	switch {
	case filepath.IsAbs(name):
		path = name
	case strings.ContainsRune(name, '/'):
		return "", fmt.Errorf("runtime %q: give a name (runc, crun) or an absolute path", name)
	default:
		for _, d := range searchDirs {
			if st, err := os.Stat(filepath.Join(d, name)); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
				path = filepath.Join(d, name)
				break
			}
		}
		if path == "" {
			return "", fmt.Errorf("runtime %q not found in %s; install it or name its absolute path with %s", name, strings.Join(searchDirs, ", "), FlagRuntime)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("runtime %s: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("runtime %s is not an executable file", path)
	}
	if self != "" {
		if me, err := os.Stat(self); err == nil && os.SameFile(me, st) {
			return "", fmt.Errorf("runtime %s is bypass-hook-runtime itself; name the real runtime (runc, crun) with %s", path, FlagRuntime)
		}
	}
	return path, nil
}

// Plan is what one call of the wrapper does: the real runtime to run with
// argv, after the bundle (if any) was prepared.
type Plan struct {
	Runtime string
	Argv    []string // argv of the real runtime, argv[0] included
	Outcome Outcome
}

// Run parses args, prepares the bundle of a create or run, and returns
// what to execute. self is the wrapper's own executable (symlinks resolved).
// An error means the container must not start; it is also written to the
// runtime's --log, where the engine reads a runtime's error from.
func Run(args []string, self string) (Plan, error) {
	inv, err := ParseArgs(args)
	if err != nil {
		return Plan{}, &UsageError{err}
	}
	plan, err := run(inv, self)
	if err != nil {
		logError(inv, err)
	}
	return plan, err
}

func run(inv Invocation, self string) (Plan, error) {
	runtimeName := inv.Options.Runtime
	if runtimeName == "" {
		runtimeName = os.Getenv(EnvRuntime)
	}
	rt, err := FindRuntime(runtimeName, self)
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{Runtime: rt, Argv: append([]string{rt}, inv.Args...)}
	if !inv.Edits() {
		return plan, nil
	}

	// The wrapper's config is its registration's or the daemon's
	// environment's: never the container's, whose spec it only reads.
	src := config.Locate(inv.Options.Config)
	cfg, err := src.Load()
	if err != nil {
		return Plan{}, err
	}
	hooks := Hooks{Binary: inv.Options.Hook}
	if src.Explicit {
		if hooks.Config, err = filepath.Abs(src.Path); err != nil {
			return Plan{}, err
		}
	}
	if hooks.Binary == "" {
		hooks.Binary = filepath.Join(filepath.Dir(self), HookName)
	}
	if !filepath.IsAbs(hooks.Binary) {
		return Plan{}, fmt.Errorf("hook binary %q is not an absolute path", hooks.Binary)
	}
	// The hook must be there before a container is given it: a missing
	// hook would fail the container with the runtime's vaguer word for it.
	if st, err := os.Stat(hooks.Binary); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return Plan{}, fmt.Errorf("hook binary %s is missing or not executable; install bypass-hook-oci beside the wrapper or name it with %s", hooks.Binary, FlagHook)
	}
	path, err := specPath(inv)
	if err != nil {
		return Plan{}, err
	}
	out, err := PrepareSpec(path, cfg, hooks)
	if err != nil {
		return Plan{}, err
	}
	plan.Outcome = out
	return plan, nil
}

// specPath is the spec file the runtime will read: the bundle's
// config.json, or the absolute path crun's --config names. A relative one
// is refused: crun versions disagree on what it is relative to (the bundle,
// or the working directory), and editing another file than the one crun
// reads would start the container without its hooks.
func specPath(inv Invocation) (string, error) {
	dir := inv.Bundle
	if dir == "" {
		dir = "."
	}
	switch {
	case inv.Spec == "" || inv.Spec == "config.json":
		return filepath.Join(dir, "config.json"), nil
	case filepath.IsAbs(inv.Spec):
		return inv.Spec, nil
	}
	return "", fmt.Errorf("%s --config %q: name the spec file by its absolute path (or leave --config out for the bundle's config.json)", inv.Command, inv.Spec)
}

// logError appends err to the runtime's --log as runc writes its own
// errors there (a JSON line for --log-format json), so that the engine
// shows the user why the container did not start.
func logError(inv Invocation, err error) {
	if inv.Log == "" {
		return
	}
	f, ferr := os.OpenFile(inv.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if ferr != nil {
		return
	}
	defer f.Close()
	writeLogLine(f, inv.LogFormat, "bypass-hook-runtime: "+err.Error())
}

func writeLogLine(w io.Writer, format, msg string) {
	if format == "json" {
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().UTC().Format(time.RFC3339Nano)})
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "time=%q level=error msg=%q\n", time.Now().UTC().Format(time.RFC3339Nano), msg)
}

// UsageError is a malformed call of the wrapper itself.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

// ExitCode is the wrapper's exit status for err, as the hook's: 2 for a
// usage or config error, 1 for a refusal or a failure to prepare.
func ExitCode(err error) int {
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		var ae *config.AnnotationError
		if !errors.As(err, &ae) {
			return 2
		}
	}
	return 1
}
