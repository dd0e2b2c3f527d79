// Package cli is the command-line shell that both binaries share: the flags
// every subcommand takes, the table of subcommands with its help and
// dispatch, and the commands of the hook itself (create, poststop, hook,
// version). bypass-hook is the whole CLI; bypass-hook-oci, the process a
// runtime starts for every container, is these commands alone, so that it
// links nothing else (no NRI, no Prometheus, no monitor) and starts almost
// as fast as an empty Go program.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
)

// Globals are the flags every subcommand takes, before or after its name.
type Globals struct {
	Config string
	Debug  bool
}

func (g *Globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.Config, "config", g.Config, "config file (default: $BYPASS_HOOK_CONFIG, then /etc/bypass-hook/config.yaml)")
	fs.BoolVar(&g.Debug, "debug", g.Debug, "log debug detail to the hook log")
}

// Command is one subcommand: it parses its own flags from args (SubFlags).
type Command struct {
	Name    string
	Summary string
	Run     func(g *Globals, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// Program is one binary: its name, version and subcommands, in the order
// the help shows them.
type Program struct {
	Name     string
	Version  string // set at build time; "dev" otherwise
	Commands []Command
	// Bare runs when no subcommand is given; nil prints the usage and
	// exits 2.
	Bare func(g *Globals, stdin io.Reader, stdout, stderr io.Writer) int
}

func (p *Program) lookup(name string) (Command, bool) {
	i := slices.IndexFunc(p.Commands, func(c Command) bool { return c.Name == name })
	if i < 0 {
		return Command{}, false
	}
	return p.Commands[i], true
}

// Run parses the global flags, then runs the subcommand args name. It
// returns the exit code: 2 for a usage error, 0 for -h, --help and
// --version.
func (p *Program) Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var g Globals
	var showVersion bool
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	fs.BoolVar(&showVersion, "version", false, "print the version")
	fs.Usage = func() { p.Usage(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case showVersion:
		return p.printVersion(stdout)
	case fs.NArg() == 0 && p.Bare != nil:
		return p.Bare(&g, stdin, stdout, stderr)
	case fs.NArg() == 0:
		p.Usage(stderr)
		return 2
	case fs.Arg(0) == "help":
		return p.help(&g, fs.Args()[1:], stdout, stderr)
	}
	cmd, ok := p.lookup(fs.Arg(0))
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n", p.Name, fs.Arg(0))
		p.Usage(stderr)
		return 2
	}
	return cmd.Run(&g, fs.Args()[1:], stdin, stdout, stderr)
}

// help prints the usage, or a command's own (as COMMAND -h does).
func (p *Program) help(g *Globals, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		p.Usage(stdout)
		return 0
	}
	cmd, ok := p.lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "%s help: unknown command %q\n", p.Name, args[0])
		p.Usage(stderr)
		return 2
	}
	return cmd.Run(g, []string{"-h"}, nil, stdout, stdout)
}

// Usage prints the synopsis and the subcommands.
func (p *Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s [--config FILE] [--debug] COMMAND [flags]\n", p.Name)
	fmt.Fprintf(w, "       %s --version | help [COMMAND]\n", p.Name)
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.Name, c.Summary)
	}
}

// SubFlags returns the flag set of subcommand name; it takes the global
// flags too, so they may also follow the subcommand.
func (p *Program) SubFlags(name string, g *Globals, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(p.Name+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	return fs
}

// VersionCommand is `version`.
func (p *Program) VersionCommand() Command {
	return Command{"version", "print the version", func(g *Globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
		fs := p.SubFlags("version", g, stderr)
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		return p.printVersion(stdout)
	}}
}

func (p *Program) printVersion(stdout io.Writer) int {
	v := p.Version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(stdout, "%s %s\n", p.Name, v)
		return 0
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && v == "dev" {
			v = "dev-" + s.Value[:min(12, len(s.Value))]
		}
	}
	fmt.Fprintf(stdout, "%s %s (%s)\n", p.Name, v, strings.TrimPrefix(bi.GoVersion, "go"))
	return 0
}
