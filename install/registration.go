// SPDX-License-Identifier: Apache-2.0

// Package install writes the registrations that make a runtime call
// bypass-hook: a hooks.d file for podman and CRI-O, the hooks of a runc or
// crun bundle, and (for the NRI plugin and the Kubernetes DaemonSet) the
// binary and config on the host.
package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/fserr"
)

// BinaryName is the CLI's name and HookBinaryName the hook's, which every
// registration runs by default: the stages alone, beside the CLI, so that a
// container's start does not pay for the rest of the CLI (NRI, Prometheus,
// the monitor). A hook whose path ends in either is taken for ours, whatever
// directory it is in (registrations made before bypass-hook-oci ran the CLI).
const (
	BinaryName     = "bypass-hook"
	HookBinaryName = "bypass-hook-oci"
)

// DefaultTimeout is how long, in seconds, a runtime lets one hook stage run.
// A fence takes well under a second; the margin is for a busy xtables lock.
const DefaultTimeout = 10

// HookPATH is the PATH written into every registration. The hook finds its
// tools by absolute path and needs none, but runtimes give hooks an empty
// environment and what the hook starts (iptables' modprobe) may need one.
const HookPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Subcommands the registrations call. hooks.d has one entry for both stages,
// so it calls "hook", which picks the stage from the state's status.
const (
	SubCreate   = "create"
	SubPoststop = "poststop"
	SubHook     = "hook"
)

// Registration is one way of having a runtime run the hook (a hooks.d file,
// a bundle's hooks, the NRI plugin's injection): the hook binary as the
// runtime sees it, its config and its timeout.
type Registration struct {
	Binary string // absolute path of the bypass-hook binary
	// Config is the config file the hook is pointed at; "" leaves the hook
	// to its default (/etc/bypass-hook/config.yaml, which may be absent).
	Config  string
	Timeout int // seconds; 0 means DefaultTimeout
}

// Hook is the OCI hook entry that runs subcommand. The config goes both on
// the command line, where it wins and shows in `ps`, and into the
// environment, where podman's and CRI-O's users look for it.
func (t Registration) Hook(subcommand string) specs.Hook {
	args := []string{t.Binary}
	env := []string{HookPATH}
	if t.Config != "" {
		args = append(args, "--config", t.Config)
		env = append(env, config.EnvVar+"="+t.Config)
	}
	timeout := t.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return specs.Hook{
		Path:    t.Binary,
		Args:    append(args, subcommand),
		Env:     env,
		Timeout: &timeout,
	}
}

// Check validates a target before it is written anywhere: the binary is an
// absolute path to an executable regular file, the config (if any) an
// absolute path. root, when not empty, is where the paths are looked for,
// as when packaging into a DESTDIR; the written paths stay as given.
func (t Registration) Check(root string) error {
	if t.Binary == "" {
		return errors.New("no hook binary: pass --binary PATH")
	}
	if !filepath.IsAbs(t.Binary) {
		return fmt.Errorf("hook binary %q is not an absolute path: runtimes run hooks by absolute path, without a PATH", t.Binary)
	}
	if filepath.Clean(t.Binary) != t.Binary {
		return fmt.Errorf("hook binary %q is not a clean path; write %q", t.Binary, filepath.Clean(t.Binary))
	}
	at := filepath.Join(root, t.Binary)
	st, err := os.Stat(at)
	switch {
	case err != nil:
		return fmt.Errorf("hook binary %s: %w (install it first, or pass --binary PATH)", at, fserr.Cause(err))
	case !st.Mode().IsRegular():
		return fmt.Errorf("hook binary %s is not a regular file", at)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("hook binary %s is not executable (chmod 0755 it)", at)
	}
	if t.Timeout < 0 {
		return fmt.Errorf("hook timeout %d is negative", t.Timeout)
	}
	if t.Config != "" && !filepath.IsAbs(t.Config) {
		return fmt.Errorf("config %q is not an absolute path: the runtime runs the hook in a directory of its choosing", t.Config)
	}
	return nil
}

// IsOurs tells whether an existing hook runs bypass-hook: the same path as
// binary, the same file, or any file named bypass-hook-oci or bypass-hook
// (another registration of the hook, such as a hooks.d entry with another
// path).
func IsOurs(path, binary string) bool {
	if path == "" {
		return false
	}
	if base := filepath.Base(path); path == binary || base == HookBinaryName || base == BinaryName {
		return true
	}
	if binary == "" {
		return false
	}
	a, errA := os.Stat(path)
	b, errB := os.Stat(binary)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// ResolveConfig picks the config for a registration as the hook would pick
// it (--config, then $BYPASS_HOOK_CONFIG, then the default file) and loads
// it, so that nothing is written for a config the hook would refuse. path
// is what the registration names: absolute, or "" for the default, which
// the hook finds by itself and which may be absent. root, when not empty,
// is where the file is read from, as when packaging into a DESTDIR.
func ResolveConfig(root, flagValue string) (path string, cfg *config.Config, err error) {
	src := config.Locate(flagValue)
	if src.Explicit {
		if src.Path, err = filepath.Abs(src.Path); err != nil {
			return "", nil, err
		}
	}
	cfg, err = config.Source{Path: filepath.Join(root, src.Path), Explicit: src.Explicit}.Load()
	if err != nil || !src.Explicit {
		return "", cfg, err
	}
	return src.Path, cfg, nil
}

// DefaultBinary is what a registration made on this host runs:
// bypass-hook-oci beside the running executable (symlinks resolved), or
// the executable itself where there is none beside it (a build of the CLI
// alone, which serves the same stage commands).
func DefaultBinary() (string, error) {
	self, err := Executable()
	if err != nil {
		return "", err
	}
	hook := filepath.Join(filepath.Dir(self), HookBinaryName)
	if st, err := os.Stat(hook); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
		return hook, nil
	}
	return self, nil
}

// Executable is the running executable, symlinks resolved.
func Executable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this executable: %w; pass --binary PATH", err)
	}
	return filepath.EvalSymlinks(p)
}

// hookStages are the stage names of specs.Hooks, as config.json spells them.
var hookStages = []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
