// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

// installFlags are the flags of the registration kinds; each kind
// registers those it takes.
type installFlags struct {
	g       *globals
	binary  string
	timeout int
	root    string
	remove  bool
	force   bool
	// annotate: install bundle also opts the bundle in (selection: annotated).
	annotate bool
}

func (f *installFlags) registrationFlags(fs *flag.FlagSet, what string) {
	f.g.configFlag(fs)
	fs.StringVar(&f.binary, "binary", "", "hook binary the runtime runs (default: bypass-hook-oci beside this executable, else this executable)")
	fs.IntVar(&f.timeout, "timeout", install.DefaultTimeout, "seconds the runtime lets each hook stage run")
	fs.BoolVar(&f.remove, "remove", false, "remove the "+what+" instead of writing it")
}

const registrationHelp = `
--binary defaults to bypass-hook-oci beside this executable (the lean hook), else
this executable; --config to $BYPASS_HOOK_CONFIG, then the hook's default
/etc/bypass-hook/config.yaml (which is then not written into the
registration, and may be absent). The config is checked before anything is
written.`

func installCommand(g *globals) *cli.Command {
	f := &installFlags{g: g}
	return &cli.Command{
		Name:    "install",
		Summary: "write (or remove) registrations that make runtimes run the hook",
		Help:    "Registrations: hooks.d for podman and CRI-O, the CDI spec for Docker and every\nCDI runtime, bundle hooks for runc and crun; and the Kubernetes DaemonSet's init\nsteps (binary, config, state-dir).",
		Subcommands: []*cli.Command{
			f.hooksDirCommand(),
			f.cdiCommand(),
			f.bundleCommand(),
			dockerRuntimeCommand(g),
			containerdRuntimeCommand(g),
			f.binaryCommand(),
			f.configCommand(),
			f.stateDirCommand(),
		},
	}
}

func (f *installFlags) hooksDirCommand() *cli.Command {
	return &cli.Command{
		Name:    "hooks-dir",
		Summary: "write bypass-hook.json where podman and CRI-O read hooks.d files (schema 1.0.0)",
		Args:    "[DIR]",
		Help: `Writes bypass-hook.json, which runs bypass-hook hook at createRuntime and
poststop; its "when" follows the config's selection (write it again after
changing selection). With no DIR it goes where the installed podman and CRI-O
read: the hooks_dir of their config (containers.conf, crio.conf and their .d
directories), else their default /usr/share/containers/oci/hooks.d (podman 4.3
reads only that one). A DIR that no installed engine reads is refused (exit 1):
a hook file nobody reads fences nothing, in silence; --force writes it anyway.
With --root (packaging) both engines count as installed, their config read
under the root. With --remove, removes the file (only if it runs bypass-hook).` + registrationHelp + `

Examples:
  sudo bypass-hook install hooks-dir
  sudo bypass-hook install hooks-dir --remove
  bypass-hook install hooks-dir /tmp/hooks.d --force   # for podman --hooks-dir /tmp/hooks.d`,
		Flags: func(fs *flag.FlagSet) {
			f.registrationFlags(fs, "hooks.d file")
			fs.StringVar(&f.root, "root", "", "read --binary and the config under this directory and write there (packaging into DESTDIR)")
			fs.BoolVar(&f.force, "force", false, "write DIR even though no installed engine reads it")
		},
		Run: func(o cli.IO, args []string) int {
			if len(args) > 1 {
				fmt.Fprintf(o.Stderr, "bypass-hook install hooks-dir: one directory at most (got %d arguments)\nRun 'bypass-hook help install hooks-dir' for usage.\n", len(args))
				return cli.ExitUsage
			}
			dir := ""
			if len(args) == 1 {
				dir = args[0]
			}
			return f.hooksDir(o, dir)
		},
	}
}

func (f *installFlags) cdiCommand() *cli.Command {
	return &cli.Command{
		Name:    "cdi",
		Summary: "write DIR/bypass-hook.io-fence.json, the fence as a CDI device (Docker, podman, containerd, CRI-O)",
		Args:    "[DIR]",
		Help: `Writes DIR/` + install.CDIFileName + ` (DIR: ` + install.CDIDir + `), a CDI spec of kind
` + config.CDIKind + ` with the devices default (the config's policy) and audit (audit
mode). A container that asks for one (docker run --device ` + config.CDIKind + `=default)
gets the hook at createRuntime and poststop; asking counts as the annotation
` + config.AnnEnabled + `: "true", and audit only where an annotation could ask for it.
The spec is checked with the CDI library before it replaces the old one; an
unchanged spec is not written again. With --remove, removes the file. Runtimes
read /etc/cdi and /var/run/cdi by default (docker info lists its directories).` + registrationHelp + `

Examples:
  sudo bypass-hook install cdi
  sudo bypass-hook install cdi /var/run/cdi --config /etc/bypass-hook/config.yaml
  sudo bypass-hook install cdi --remove`,
		Flags: func(fs *flag.FlagSet) {
			f.registrationFlags(fs, "CDI spec")
			fs.StringVar(&f.root, "root", "", "read --binary and the config under this directory and write there (packaging into DESTDIR)")
		},
		Run: func(o cli.IO, args []string) int {
			if len(args) == 0 {
				return f.cdi(o, install.CDIDir)
			}
			return oneDir("cdi", f.cdi)(o, args)
		},
	}
}

func (f *installFlags) bundleCommand() *cli.Command {
	return &cli.Command{
		Name:    "bundle",
		Summary: "add the hooks to (or remove them from) a runc/crun bundle's config.json",
		Args:    "DIR",
		Help: `Adds createRuntime and poststop hooks that run bypass-hook to DIR/config.json
(once; a second run changes nothing). With --remove, takes them out again.
Then decides as the hook will from the bundle's annotations and warns on
stderr when the container would start unfenced (under selection: annotated,
a bundle without bypass-hook.io/enabled: "true"); --annotate writes that
annotation into DIR/config.json.` + registrationHelp + `

Examples:
  bypass-hook install bundle ./mybundle && runc run -b ./mybundle web
  bypass-hook install bundle --annotate ./mybundle    # selection: annotated`,
		Flags: func(fs *flag.FlagSet) {
			f.registrationFlags(fs, "hooks")
			fs.BoolVar(&f.annotate, "annotate", false, `also add the annotation `+config.AnnEnabled+`: "true" (the opt-in of selection: annotated)`)
		},
		Run: oneDir("bundle", f.bundle),
	}
}

func (f *installFlags) binaryCommand() *cli.Command {
	return &cli.Command{
		Name:    "binary",
		Summary: "copy the hook to DIR/bypass-hook-oci (the Kubernetes DaemonSet's init step)",
		Args:    "DIR",
		Help:    "Reads the hook binary: bypass-hook-oci beside this executable, else this\nexecutable. Writes DIR/bypass-hook-oci (DIR/bypass-hook when it copies this\nexecutable), mode 0755, atomically.\n\nExample:\n  bypass-hook install binary /host/opt/bypass-hook/bin",
		Run:     oneDir("binary", f.binaryCopy),
	}
}

func (f *installFlags) configCommand() *cli.Command {
	return &cli.Command{
		Name:    "config",
		Summary: "check the --config FILE and write it to DEST (the DaemonSet's ConfigMap onto the node)",
		Args:    "DEST",
		Help: `Reads the --config FILE (required) and checks it as the hook would; writes it
to DEST. A broken FILE over a good DEST keeps DEST (exit 0, with a warning), so
a typo in a ConfigMap never leaves the NRI plugin without a config, and writes
DEST.rejected with the reason: the NRI plugin is not ready while it is there,
so the rollout of a broken config stops visibly at the first node while the
nodes go on fencing with the config they had. A good FILE removes it.

Example:
  bypass-hook install config --config /etc/config-map/config.yaml /host/etc/bypass-hook/config.yaml`,
		Flags: f.g.configFlag,
		Run:   oneDir("config", f.configCopy),
	}
}

func (f *installFlags) stateDirCommand() *cli.Command {
	return &cli.Command{
		Name:    "state-dir",
		Summary: "make the hook's state directory DIR (mode 0700, root), as the hook would",
		Args:    "DIR",
		Help:    "Makes DIR (mode 0700, owned by root) or checks it: the monitor DaemonSet's init\nstep, so that the kubelet never makes it 0755.\n\nExample:\n  bypass-hook install state-dir /run/bypass-hook",
		Run:     oneDir("state-dir", f.stateDir),
	}
}

// oneDir runs a kind that takes exactly one argument: a directory, or the
// config's DEST.
func oneDir(name string, run func(cli.IO, string) int) func(cli.IO, []string) int {
	return func(o cli.IO, args []string) int {
		if len(args) != 1 {
			fmt.Fprintf(o.Stderr, "bypass-hook install %s: name one directory (got %d arguments)\nRun 'bypass-hook help install %s' for usage.\n", name, len(args), name)
			return cli.ExitUsage
		}
		return run(o, args[0])
	}
}

// fail reports err and returns the exit code: 2 for a config error, else 1.
func fail(o cli.IO, kind string, err error) int {
	fmt.Fprintf(o.Stderr, "bypass-hook install %s: %v\n", kind, err)
	var cfgErr *config.Error
	if errors.As(err, &cfgErr) {
		return cli.ExitUsage
	}
	return 1
}

// target is what the registrations run: the binary, the config as the
// hook would pick it, and the timeout.
func (f *installFlags) target() (install.Registration, *config.Config, error) {
	cfgPath, cfg, err := install.ResolveConfig(f.root, f.g.config)
	if err != nil {
		return install.Registration{}, nil, err
	}
	t := install.Registration{Binary: f.binary, Config: cfgPath, Timeout: f.timeout}
	if t.Binary == "" {
		if f.root != "" {
			return t, nil, errors.New("--root needs --binary: the path the runtime will run, as installed")
		}
		if t.Binary, err = install.DefaultBinary(); err != nil {
			return t, nil, err
		}
	}
	return t, cfg, nil
}

// hooksDir writes (or removes) the hooks.d file where an installed engine
// reads it, DIR "" meaning every engine's own: a file nobody reads fences
// nothing, in silence.
func (f *installFlags) hooksDir(o cli.IO, dir string) int {
	engines, err := install.InstalledEngines(f.root)
	if err != nil {
		return fail(o, "hooks-dir", err)
	}
	dirs := []string{dir}
	if dir == "" {
		if dirs, err = install.DefaultHooksDirs(engines); err != nil {
			return fail(o, "hooks-dir", err)
		}
	}
	if f.remove {
		return f.removeHooksDirs(o, dirs)
	}
	switch {
	case dir == "":
	case f.force:
		if len(install.Readers(f.root, dir, engines)) == 0 {
			fmt.Fprintf(o.Stderr, "bypass-hook install hooks-dir: WARNING: no installed engine reads %s (--force): the file fences nothing until one does (an engine installed later with it as its hooks_dir, or podman --hooks-dir %s)\n", dir, dir)
		}
	default:
		if _, err := install.CheckHooksDir(f.root, dir, engines); err != nil {
			return fail(o, "hooks-dir", err)
		}
	}
	t, cfg, err := f.target()
	if err != nil {
		return fail(o, "hooks-dir", err)
	}
	for _, d := range dirs {
		path, err := install.WriteHooksDir(f.root, d, t, cfg.Selection)
		if err != nil {
			return fail(o, "hooks-dir", err)
		}
		var names []string
		for _, e := range install.Readers(f.root, d, engines) {
			names = append(names, e.Name)
		}
		readBy := ""
		if len(names) > 0 {
			readBy = ", read by " + strings.Join(names, " and ")
		}
		fmt.Fprintf(o.Stdout, "wrote %s%s (selection: %s; write it again after changing selection)\n", path, readBy, cfg.Selection)
		for _, m := range install.Masking(f.root, d, engines) {
			fmt.Fprintf(o.Stderr, "bypass-hook install hooks-dir: WARNING: %s is read by the same engine: one of the two masks the other; remove the one you do not mean\n", m)
		}
	}
	return 0
}

func (f *installFlags) removeHooksDirs(o cli.IO, dirs []string) int {
	for _, d := range dirs {
		path, removed, err := install.RemoveHooksDir(f.root, d)
		if err != nil {
			return fail(o, "hooks-dir", err)
		}
		sayRemoved(o, path, removed)
	}
	return 0
}

// sayRemoved tells what a --remove did, which is not an error either way.
func sayRemoved(o cli.IO, path string, removed bool) {
	if removed {
		fmt.Fprintf(o.Stdout, "removed %s\n", path)
	} else {
		fmt.Fprintf(o.Stdout, "nothing to remove: %s does not exist\n", path)
	}
}

func (f *installFlags) cdi(o cli.IO, dir string) int {
	if f.remove {
		path, removed, err := install.RemoveCDI(f.root, dir)
		if err != nil {
			return fail(o, "cdi", err)
		}
		sayRemoved(o, path, removed)
		return 0
	}
	t, _, err := f.target()
	if err != nil {
		return fail(o, "cdi", err)
	}
	path, changed, err := install.WriteCDI(f.root, dir, t)
	if err != nil {
		return fail(o, "cdi", err)
	}
	verb := map[bool]string{true: "wrote", false: "unchanged:"}[changed]
	fmt.Fprintf(o.Stdout, "%s %s (devices %s=%s)\n", verb, path, config.CDIKind, strings.Join(config.Devices, ", ="))
	return 0
}

func (f *installFlags) bundle(o cli.IO, dir string) int {
	if f.remove && f.annotate {
		fmt.Fprintln(o.Stderr, "bypass-hook install bundle: --annotate opts the bundle in; it does not go with --remove\nRun 'bypass-hook help install bundle' for usage.")
		return cli.ExitUsage
	}
	var changed bool
	var cfg *config.Config
	var err error
	if f.remove {
		bin := f.binary
		if bin == "" {
			// The default of the patch too, so a binary not named
			// bypass-hook is found again.
			bin, _ = install.DefaultBinary()
		}
		changed, err = install.UnpatchBundle(dir, bin)
	} else {
		var t install.Registration
		if t, cfg, err = f.target(); err == nil {
			changed, err = install.PatchBundle(dir, t)
		}
	}
	if err != nil {
		return fail(o, "bundle", err)
	}
	verb := map[bool]string{false: "added the hooks to", true: "removed the hooks from"}[f.remove]
	if !changed {
		verb = "nothing to change in"
	}
	file := strings.TrimRight(dir, "/") + "/config.json"
	fmt.Fprintf(o.Stdout, "%s %s\n", verb, file)
	if f.remove {
		return 0
	}
	if f.annotate {
		changed, err := install.AnnotateBundle(dir)
		if err != nil {
			return fail(o, "bundle", err)
		}
		if changed {
			fmt.Fprintf(o.Stdout, "added the annotation %s: \"true\" to %s\n", config.AnnEnabled, file)
		}
	}
	return warnUnfenced(o, dir, file, cfg)
}

// warnUnfenced decides as the hook will for the bundle's annotations and
// says so when the container would start unfenced or be refused: the
// hook's log is the only other place that tells.
func warnUnfenced(o cli.IO, dir, file string, cfg *config.Config) int {
	annotations, err := install.BundleAnnotations(dir)
	if err != nil {
		return fail(o, "bundle", err)
	}
	d, err := cfg.Decide(annotations)
	switch {
	case err != nil:
		fmt.Fprintf(o.Stderr, "bypass-hook install bundle: WARNING: the hook will refuse this container (runc run fails): %v\n", err)
	case d.Fence:
	case cfg.Selection == config.SelectAnnotated && len(cfg.ProxyAddrs()) > 0:
		fmt.Fprintf(o.Stderr, "bypass-hook install bundle: WARNING: the container will start UNFENCED: the config (%s) has selection: annotated and %s has no annotation %s: \"true\".\n"+
			"  Opt it in: bypass-hook install bundle --annotate %s\n"+
			"  (or add \"annotations\": {\"%s\": \"true\"} to %s yourself)\n",
			config.File(cfg), file, config.AnnEnabled, dir, config.AnnEnabled, file)
	default:
		fmt.Fprintf(o.Stderr, "bypass-hook install bundle: WARNING: the container will start unfenced: %s (config %s)\n", d.Reason, config.File(cfg))
	}
	return 0
}

func (f *installFlags) binaryCopy(o cli.IO, dir string) int {
	self, err := install.DefaultBinary()
	if err != nil {
		return fail(o, "binary", err)
	}
	path, err := install.CopyBinary(self, dir)
	if err != nil {
		return fail(o, "binary", err)
	}
	fmt.Fprintf(o.Stdout, "copied %s to %s\n", self, path)
	return 0
}

func (f *installFlags) configCopy(o cli.IO, dest string) int {
	src := config.Locate(f.g.config)
	if !src.Explicit {
		fmt.Fprintln(o.Stderr, "bypass-hook install config: name the config to install with --config FILE")
		return cli.ExitUsage
	}
	if err := install.CopyConfig(src.Path, dest); err != nil {
		var cfgErr *config.Error
		if !errors.As(err, &cfgErr) {
			return fail(o, "config", err)
		}
		// A typo in the ConfigMap must not keep the plugin from starting
		// (NRI would then let containers start unfenced): the node keeps
		// the config it had, which the plugin keeps using; with none (or a
		// broken one), the plugin fails closed.
		if merr := install.MarkRejected(dest, err); merr != nil {
			fmt.Fprintf(o.Stderr, "bypass-hook install config: WARNING: %v: the NRI plugin cannot report the refused config\n", merr)
		}
		if _, lerr := (config.Source{Path: dest, Explicit: true}).Load(); lerr == nil {
			fmt.Fprintf(o.Stderr, "bypass-hook install config: %v\nKEEPING the node's current %s; fix the config and roll out again\n", err, dest)
		} else {
			fmt.Fprintf(o.Stderr, "bypass-hook install config: %v\nthe node has no good config at %s: the NRI plugin gives every container outside the excluded namespaces a hook that REFUSES it until the config is fixed; fix it and roll out again\n", err, dest)
		}
		return 0
	}
	if err := install.ClearRejected(dest); err != nil {
		return fail(o, "config", err)
	}
	fmt.Fprintf(o.Stdout, "wrote %s\n", dest)
	return 0
}

func (f *installFlags) stateDir(o cli.IO, dir string) int {
	if _, err := records.Open(dir); err != nil {
		return fail(o, "state-dir", err)
	}
	fmt.Fprintf(o.Stdout, "state directory %s is ready (mode 0700, owned by root)\n", dir)
	return 0
}
