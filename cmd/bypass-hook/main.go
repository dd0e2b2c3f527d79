// Command bypass-hook is an OCI runtime hook that fences a container's
// egress to its HTTP CONNECT proxy. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every subcommand takes, before or after its name.
type globals struct {
	config string
	debug  bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "config file (default: $BYPASS_HOOK_CONFIG, then /etc/bypass-hook/config.yaml)")
	fs.BoolVar(&g.debug, "debug", g.debug, "log debug detail to the hook log")
}

// command is one subcommand: it parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(g *globals, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands is the one list of subcommands, in the order the help shows them.
var commands = []command{
	{"create", "createRuntime (or prestart) stage: fence the container; OCI state on stdin", runStage("create")},
	{"poststop", "poststop stage: remove the container's fence; OCI state on stdin", runStage("poststop")},
	{"hook", "either stage, chosen from the state's status", runStage("hook")},
	{"nri", "run as a containerd NRI plugin that injects the hook", runNRI},
	{"install", "write registrations: hooks.d file, bundle hooks, binary and config for the NRI DaemonSet", runInstall},
	{"monitor", "print bypass attempts as JSON lines on stdout, serve metrics", runMonitor},
	{"status", "show the rules and packet counters of fenced containers", runStatus},
	{"version", "print the version", runVersion},
}

// lookup returns the subcommand called name.
func lookup(name string) (command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return commands[i], true
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var g globals
	fs := flag.NewFlagSet("bypass-hook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 && os.Getenv(nriSocketEnv) != "" {
		// containerd starts a pre-registered NRI plugin (a link to this
		// binary in its plugin directory) without arguments.
		return runNRI(&g, nil, stdin, stdout, stderr)
	}
	if fs.NArg() == 0 {
		usage(stderr)
		return 2
	}
	name := fs.Arg(0)
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "bypass-hook: unknown command %q\n", name)
		usage(stderr)
		return 2
	}
	return cmd.run(&g, fs.Args()[1:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: bypass-hook [--config FILE] [--debug] COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

// subFlags returns a flag set for a subcommand that also takes the globals.
func subFlags(name string, g *globals, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bypass-hook "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	return fs
}

func runVersion(g *globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := subFlags("version", g, stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && v == "dev" {
				v = "dev-" + s.Value[:min(12, len(s.Value))]
			}
		}
		fmt.Fprintf(stdout, "bypass-hook %s (%s)\n", v, strings.TrimPrefix(bi.GoVersion, "go"))
		return 0
	}
	fmt.Fprintf(stdout, "bypass-hook %s\n", v)
	return 0
}
