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

func init() {
	commands["install"] = command{"write registrations: hooks.d file, bundle hooks, binary and config for the NRI DaemonSet", runInstall}
}

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

func runInstall(g *globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := subFlags("install", g, stderr)
	binary := fs.String("binary", "", "hook binary the runtime runs (default: this executable)")
	timeout := fs.Int("timeout", install.DefaultTimeout, "seconds the runtime lets each hook stage run")
	root := fs.String("root", "", "hooks-dir: read --binary and the config under this directory and write there (packaging into DESTDIR)")
	remove := fs.Bool("remove", false, "bundle: remove the hooks instead of adding them")
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
	action, dir := pos[0], pos[1]
	if *root != "" && action != "hooks-dir" {
		fmt.Fprintf(stderr, "bypass-hook install %s: --root is for hooks-dir only\n", action)
		return 2
	}

	fail := func(err error) int {
		fmt.Fprintf(stderr, "bypass-hook install %s: %v\n", action, err)
		var cfgErr *config.Error
		if errors.As(err, &cfgErr) {
			return 2
		}
		return 1
	}
	target := func() (install.Target, *config.Config, error) {
		cfgPath, cfg, err := install.ResolveConfig(*root, g.config)
		if err != nil {
			return install.Target{}, nil, err
		}
		t := install.Target{Binary: *binary, Config: cfgPath, Timeout: *timeout}
		if t.Binary == "" {
			if *root != "" {
				return t, nil, errors.New("--root needs --binary: the path the runtime will run, as installed")
			}
			if t.Binary, err = install.DefaultBinary(); err != nil {
				return t, nil, err
			}
		}
		return t, cfg, nil
	}

	switch action {
	case "hooks-dir":
		t, cfg, err := target()
		if err != nil {
			return fail(err)
		}
		path, err := install.WriteHooksDir(*root, dir, t, cfg.Selection)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s (selection: %s; write it again after changing selection)\n", path, cfg.Selection)
	case "bundle":
		var changed bool
		if *remove {
			bin := *binary
			if bin == "" {
				// The default of the patch too, so a binary not named
				// bypass-hook is found again.
				bin, _ = install.DefaultBinary()
			}
			changed, err = install.UnpatchBundle(dir, bin)
		} else {
			var t install.Target
			if t, _, err = target(); err == nil {
				changed, err = install.PatchBundle(dir, t)
			}
		}
		if err != nil {
			return fail(err)
		}
		verb := map[bool]string{false: "added the hooks to", true: "removed the hooks from"}[*remove]
		if !changed {
			verb = "nothing to change in"
		}
		fmt.Fprintf(stdout, "%s %s/config.json\n", verb, strings.TrimRight(dir, "/"))
	case "binary":
		self, err := install.DefaultBinary()
		if err != nil {
			return fail(err)
		}
		path, err := install.CopyBinary(self, dir)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "copied %s to %s\n", self, path)
	case "config":
		src, explicit := config.ResolvePath(g.config)
		if !explicit {
			fmt.Fprintln(stderr, "bypass-hook install config: name the config to install with --config FILE")
			return 2
		}
		if err := install.CopyConfig(src, dir); err != nil {
			var cfgErr *config.Error
			if _, lerr := config.Load(dir); errors.As(err, &cfgErr) && lerr == nil {
				// A typo in the ConfigMap must not keep the plugin from
				// starting (NRI would then let containers start unfenced):
				// the node keeps the config it had.
				fmt.Fprintf(stderr, "bypass-hook install config: %v\nKEEPING the node's current %s; fix the config and roll out again\n", err, dir)
				return 0
			}
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", dir)
	case "state-dir":
		if _, err := records.Open(dir); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "state directory %s is ready (mode 0700, owned by root)\n", dir)
	default:
		fmt.Fprintf(stderr, "bypass-hook install: unknown target %q\n", action)
		fmt.Fprint(stderr, installUsage)
		return 2
	}
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
