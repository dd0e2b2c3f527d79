// SPDX-License-Identifier: Apache-2.0

// Package wrapper is the logic of bypass-hook-runtime, an OCI runtime that
// an engine calls instead of runc (as nvidia-container-runtime is called):
// on create and run it writes bypass-hook's createRuntime and poststop hooks
// into the bundle's config.json where the config selects the container, and
// then the real runtime runs with the engine's arguments untouched. Every
// other command goes straight to the real runtime.
package wrapper

import (
	"fmt"
	"strings"
)

// The wrapper's own flags. They come first, before the runtime's, as
// Docker's runtimeArgs put them, and are taken off before the real runtime
// runs. Their names cannot be taken for a flag of runc's or crun's.
const (
	FlagConfig  = "--bypass-hook-config"  // the config file (else $BYPASS_HOOK_CONFIG, else the default)
	FlagRuntime = "--bypass-hook-runtime" // the real runtime: a name (runc, crun) or an absolute path
	FlagHook    = "--bypass-hook-oci"     // the hook binary the hooks run (else bypass-hook-oci beside the wrapper)
)

// Options are the wrapper's own flags.
type Options struct {
	Config  string
	Runtime string
	Hook    string
}

// Invocation is one call of the wrapper, as parsed.
type Invocation struct {
	Options Options
	// Args are the real runtime's arguments, exactly as the engine passed them.
	Args []string
	// Command is the runtime's command (create, run, start, delete ...),
	// "" when there is none (runc --version).
	Command string
	// Bundle is the bundle directory of create, run and restore: --bundle
	// or -b, else the working directory ("").
	Bundle string
	// Spec is crun's --config (-f): the spec file, relative to the bundle,
	// that crun reads instead of config.json; "" when not given.
	Spec string
	// Log and LogFormat are the runtime's --log and --log-format, where the
	// engine reads the runtime's error from (containerd's shim does).
	Log, LogFormat string
}

// Edits tells whether this call may need the bundle's config.json edited:
// each command that makes a container from a bundle. restore is one: runc
// and crun run its createRuntime hooks as create does.
func (inv Invocation) Edits() bool {
	return inv.Command == "create" || inv.Command == "run" || inv.Command == "restore"
}

// globalValueFlags are the global flags of runc and crun that take a value
// as the next argument (without "="); every other global flag is a switch.
var globalValueFlags = map[string]bool{
	"log": true, "log-format": true, "root": true, "criu": true, "rootless": true,
	"cgroup-manager": true, "log-level": true,
}

// createValueFlags are the flags of runc's and crun's create, run and
// restore that take a value as the next argument.
var createValueFlags = map[string]bool{
	"bundle": true, "b": true, "console-socket": true, "pid-file": true,
	"preserve-fds": true, "pidfd-socket": true, "config": true, "f": true,
	"image-path": true, "work-path": true, "parent-path": true, "manage-cgroups-mode": true,
	"empty-ns": true, "lsm-profile": true, "lsm-mount-context": true,
}

// ParseArgs splits the wrapper's flags from the runtime's arguments and
// finds the command, and for create and run the bundle. It never changes
// the runtime's arguments: a flag it does not know is passed on as it is.
func ParseArgs(args []string) (Invocation, error) {
	var inv Invocation
	for len(args) > 0 {
		name, value, hasValue := strings.Cut(args[0], "=")
		var dst *string
		switch name {
		case FlagConfig:
			dst = &inv.Options.Config
		case FlagRuntime:
			dst = &inv.Options.Runtime
		case FlagHook:
			dst = &inv.Options.Hook
		}
		if dst == nil {
			break
		}
		if !hasValue {
			if len(args) < 2 {
				return inv, fmt.Errorf("%s needs a value", name)
			}
			value, args = args[1], args[1:]
		}
		if value == "" {
			return inv, fmt.Errorf("%s needs a value", name)
		}
		*dst = value
		args = args[1:]
	}
	inv.Args = args

	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if globalValueFlags[name] && !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "log":
			inv.Log = value
		case "log-format":
			inv.LogFormat = value
		}
	}
	if i >= len(args) {
		return inv, nil
	}
	inv.Command = args[i]
	if !inv.Edits() {
		return inv, nil
	}
	// Flags may follow the container id: runc (urfave/cli) moves them in
	// front of it, crun (getopt) permutes them. Only "--" ends them. The
	// last --bundle wins, in both.
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue // the container id
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if createValueFlags[name] && !hasValue {
			if j+1 >= len(args) {
				return inv, fmt.Errorf("%s %s needs a value", inv.Command, a)
			}
			j++
			value = args[j]
		}
		switch name {
		case "bundle", "b":
			inv.Bundle = value
		case "config", "f":
			inv.Spec = value
		}
	}
	return inv, nil
}
