package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"

	"github.com/bypass-hook/bypass-hook/hook/records"
)

const installUsage = `usage:
  bypass-hook install hooks-dir DIR [--binary PATH] [--config FILE] [--timeout SEC] [--root DESTDIR]
      write DIR/bypass-hook.json for podman and CRI-O (hooks.d schema 1.0.0)
  bypass-hook install bundle DIR [--binary PATH] [--config FILE] [--timeout SEC] [--remove]
      add the hooks to (or remove them from) a runc/crun bundle's config.json
  bypass-hook install binary DIR
      copy this executable to DIR/bypass-hook (the Kubernetes DaemonSet's init step)
  bypass-hook --config FILE install config DEST
      check FILE and write it to DEST (the DaemonSet's ConfigMap onto the node)
  bypass-hook install state-dir DIR
      make the hook's state directory DIR (mode 0700, root), as the hook would
      (the monitor DaemonSet's init step, so the kubelet never makes it 0755)

--binary defaults to this executable; --config to $BYPASS_HOOK_CONFIG, then the
hook's default /etc/bypass-hook/config.yaml (which is then not written into the
registration, and may be absent).
`

// installArgs are the parsed flags of `install`, shared by its kinds.
type installArgs struct {
	g       *globals
	binary  string
	timeout int
	root    string
	remove  bool
	stdout  io.Writer
	stderr  io.Writer
	kind    string
}

// installKinds are the things `install` writes, each a small function over
// the install package.
var installKinds = map[string]func(a *installArgs, dir string) int{
	"hooks-dir": installHooksDir,
	"bundle":    installBundle,
	"binary":    installBinary,
	"config":    installConfig,
	"state-dir": installStateDir,
}

func runInstall(g *globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	a := &installArgs{g: g, stdout: stdout, stderr: stderr}
	fs := subFlags("install", g, stderr)
	fs.StringVar(&a.binary, "binary", "", "hook binary the runtime runs (default: this executable)")
	fs.IntVar(&a.timeout, "timeout", install.DefaultTimeout, "seconds the runtime lets each hook stage run")
	fs.StringVar(&a.root, "root", "", "hooks-dir: read --binary and the config under this directory and write there (packaging into DESTDIR)")
	fs.BoolVar(&a.remove, "remove", false, "bundle: remove the hooks instead of adding them")
	fs.Usage = func() { fmt.Fprint(stderr, installUsage) }

	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprint(stderr, installUsage)
		return 2
	}
	a.kind = pos[0]
	if a.root != "" && a.kind != "hooks-dir" {
		fmt.Fprintf(stderr, "bypass-hook install %s: --root is for hooks-dir only\n", a.kind)
		return 2
	}
	run, ok := installKinds[a.kind]
	if !ok {
		fmt.Fprintf(stderr, "bypass-hook install: unknown target %q\n", a.kind)
		fmt.Fprint(stderr, installUsage)
		return 2
	}
	return run(a, pos[1])
}

// fail reports err and returns the exit code: 2 for a config error, else 1.
func (a *installArgs) fail(err error) int {
	fmt.Fprintf(a.stderr, "bypass-hook install %s: %v\n", a.kind, err)
	var cfgErr *config.Error
	if errors.As(err, &cfgErr) {
		return 2
	}
	return 1
}

// registration is what the hook registrations run: the binary, the config
// as the hook would pick it, and the timeout.
func (a *installArgs) registration() (install.Registration, *config.Config, error) {
	cfgPath, cfg, err := install.ResolveConfig(a.root, a.g.config)
	if err != nil {
		return install.Registration{}, nil, err
	}
	r := install.Registration{Binary: a.binary, Config: cfgPath, Timeout: a.timeout}
	if r.Binary == "" {
		if a.root != "" {
			return r, nil, errors.New("--root needs --binary: the path the runtime will run, as installed")
		}
		if r.Binary, err = install.DefaultBinary(); err != nil {
			return r, nil, err
		}
	}
	return r, cfg, nil
}

func installHooksDir(a *installArgs, dir string) int {
	r, cfg, err := a.registration()
	if err != nil {
		return a.fail(err)
	}
	path, err := install.WriteHooksDir(a.root, dir, r, cfg.Selection)
	if err != nil {
		return a.fail(err)
	}
	fmt.Fprintf(a.stdout, "wrote %s (selection: %s; write it again after changing selection)\n", path, cfg.Selection)
	return 0
}

func installBundle(a *installArgs, dir string) int {
	var changed bool
	var err error
	if a.remove {
		bin := a.binary
		if bin == "" {
			// The default of the patch too, so a binary not named
			// bypass-hook is found again.
			bin, _ = install.DefaultBinary()
		}
		changed, err = install.UnpatchBundle(dir, bin)
	} else {
		var r install.Registration
		if r, _, err = a.registration(); err == nil {
			changed, err = install.PatchBundle(dir, r)
		}
	}
	if err != nil {
		return a.fail(err)
	}
	verb := map[bool]string{false: "added the hooks to", true: "removed the hooks from"}[a.remove]
	if !changed {
		verb = "nothing to change in"
	}
	fmt.Fprintf(a.stdout, "%s %s/config.json\n", verb, strings.TrimRight(dir, "/"))
	return 0
}

func installBinary(a *installArgs, dir string) int {
	self, err := install.DefaultBinary()
	if err != nil {
		return a.fail(err)
	}
	path, err := install.CopyBinary(self, dir)
	if err != nil {
		return a.fail(err)
	}
	fmt.Fprintf(a.stdout, "copied %s to %s\n", self, path)
	return 0
}

func installConfig(a *installArgs, dest string) int {
	src := config.Locate(a.g.config)
	if !src.Explicit {
		fmt.Fprintln(a.stderr, "bypass-hook install config: name the config to install with --config FILE")
		return 2
	}
	if err := install.CopyConfig(src.Path, dest); err != nil {
		var cfgErr *config.Error
		if !errors.As(err, &cfgErr) {
			return a.fail(err)
		}
		// A typo in the ConfigMap must not keep the plugin from starting
		// (NRI would then let containers start unfenced): the node keeps
		// the config it had, which the plugin keeps using; with none (or a
		// broken one), the plugin fails closed.
		if _, lerr := config.Load(dest); lerr == nil {
			fmt.Fprintf(a.stderr, "bypass-hook install config: %v\nKEEPING the node's current %s; fix the config and roll out again\n", err, dest)
		} else {
			fmt.Fprintf(a.stderr, "bypass-hook install config: %v\nthe node has no good config at %s: the NRI plugin gives every container outside the excluded namespaces a hook that REFUSES it until the config is fixed; fix it and roll out again\n", err, dest)
		}
		return 0
	}
	fmt.Fprintf(a.stdout, "wrote %s\n", dest)
	return 0
}

func installStateDir(a *installArgs, dir string) int {
	if _, err := records.Open(dir); err != nil {
		return a.fail(err)
	}
	fmt.Fprintf(a.stdout, "state directory %s is ready (mode 0700, owned by root)\n", dir)
	return 0
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
