// SPDX-License-Identifier: Apache-2.0

// Package cli gives bypass-hook's binaries the command-line conventions of
// their neighbours (nvidia-ctk, ctr, nerdctl): `--version` and `version`,
// `help [COMMAND]`, `-h`/`--help` that print the usage and exit 0 on every
// command, flags before or after the command's name and its arguments, a
// flag a command does not take refused with exit 2, and shell completion.
// A command gets all of it by being in the App's table.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ConfigUsage describes --config, the same on every command that takes it.
const ConfigUsage = "config file (default: $BYPASS_HOOK_CONFIG, then /etc/bypass-hook/config.yaml)"

// Exit codes shared by every command.
const (
	ExitOK    = 0
	ExitUsage = 2
)

// Command is one entry of the table: a command to run, or a group of
// commands (install, config, completion) when it has Subcommands.
type Command struct {
	Name    string
	Summary string // one line, for the command list
	// Args is the synopsis after the command's name, e.g. "DIR" or
	// "[CONTAINER]"; "[flags]" is added when the command takes any.
	Args string
	// Help says what the command reads and writes, with an example.
	Help string
	// Flags registers the command's flags, the global ones it takes
	// included; the values live where Run finds them.
	Flags func(fs *flag.FlagSet)
	// Run runs the command with its positional arguments; flags are parsed.
	Run func(io IO, args []string) int
	// Subcommands make this a group: its Run is not used.
	Subcommands []*Command
	// Complete lists the words a shell completes for the first argument.
	Complete []string
}

// IO is what a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// App is a binary: its name, version and table of commands.
type App struct {
	Name     string
	Version  func() string // the line `--version` prints
	Summary  string
	Commands []*Command
	// Globals registers the flags that may come before the command's name,
	// so that their values are told apart from the command's name. Each
	// command still says in its Flags which of them it takes.
	Globals func(fs *flag.FlagSet)
	// NoArgs runs when the binary is started without arguments; nil means
	// print the usage and exit 2.
	NoArgs func(io IO) (code int, handled bool)
}

// Main runs the command named in args and returns the exit code.
func (a *App) Main(args []string, o IO) int {
	pre, rest, err := a.splitGlobals(args)
	if err != nil {
		return a.usageError(o, nil, err)
	}
	if len(rest) == 0 {
		for _, f := range pre {
			switch flagName(f) {
			case "version":
				fmt.Fprintln(o.Stdout, a.Version())
				return ExitOK
			case "h", "help":
				a.writeUsage(o.Stdout)
				return ExitOK
			}
		}
		if len(pre) == 0 && a.NoArgs != nil {
			if code, ok := a.NoArgs(o); ok {
				return code
			}
		}
		a.writeUsage(o.Stderr)
		return ExitUsage
	}
	path, cmd, args := resolve(a.table(), rest)
	if cmd == nil {
		return a.usageError(o, path, fmt.Errorf("unknown command %q", strings.Join(rest[:min(len(rest), len(path)+1)], " ")))
	}
	args = append(pre, args...)
	full := append(path, cmd)
	if len(cmd.Subcommands) > 0 {
		if wantsHelp(args) {
			a.writeCommandUsage(o.Stdout, full)
			return ExitOK
		}
		return a.usageError(o, full, fmt.Errorf("%s needs a command: %s", cmd.Name, names(cmd.Subcommands)))
	}
	fs := a.flagSet(full)
	pos, err := ParseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.writeCommandUsage(o.Stdout, full)
		return ExitOK
	}
	if err != nil {
		return a.usageError(o, full, err)
	}
	return cmd.Run(o, pos)
}

// table is the App's commands and the ones every binary has.
func (a *App) table() []*Command {
	return append(append([]*Command{}, a.Commands...), a.builtins()...)
}

// resolve walks the table along args: it returns the groups passed
// through, the command reached (nil when a name is unknown) and the
// arguments left. Flags may sit between a group's name and its command's.
func resolve(table []*Command, args []string) (path []*Command, cmd *Command, rest []string) {
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			continue // a flag before a group's subcommand: passed on below
		}
		next := lookup(table, args[i])
		if next == nil {
			if cmd != nil {
				path = append(path, cmd)
			}
			return path, nil, nil
		}
		if cmd != nil {
			path = append(path, cmd)
		}
		cmd, table = next, next.Subcommands
		rest = append(flagsOnly(args[:i]), args[i+1:]...)
		if len(next.Subcommands) == 0 {
			return path, cmd, rest
		}
	}
	return path, cmd, rest
}

func flagsOnly(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			out = append(out, a)
		}
	}
	return out
}

func lookup(table []*Command, name string) *Command {
	for _, c := range table {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// splitGlobals takes the flags before the command's name, with the values
// of those global flags that take one.
func (a *App) splitGlobals(args []string) (pre, rest []string, err error) {
	globals := flag.NewFlagSet(a.Name, flag.ContinueOnError)
	if a.Globals != nil {
		a.Globals(globals)
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return pre, args[i+1:], nil
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			return pre, args[i:], nil
		}
		pre = append(pre, arg)
		name := flagName(arg)
		if strings.Contains(arg, "=") {
			continue
		}
		f := globals.Lookup(name)
		if f == nil {
			continue // the command's flag set decides
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 >= len(args) {
			return nil, nil, fmt.Errorf("flag needs an argument: %s", arg)
		}
		i++
		pre = append(pre, args[i])
	}
	return pre, nil, nil
}

func flagName(arg string) string {
	name := strings.TrimLeft(arg, "-")
	name, _, _ = strings.Cut(name, "=")
	return name
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if n := flagName(a); strings.HasPrefix(a, "-") && (n == "h" || n == "help") {
			return true
		}
	}
	return false
}

// flagSet is the command's flag set, which writes nothing itself: Main
// reports errors and usage in one place.
func (a *App) flagSet(path []*Command) *flag.FlagSet {
	fs := flag.NewFlagSet(a.commandLine(path), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if cmd := path[len(path)-1]; cmd.Flags != nil {
		cmd.Flags(fs)
	}
	return fs
}

func (a *App) commandLine(path []*Command) string {
	parts := []string{a.Name}
	for _, c := range path {
		parts = append(parts, c.Name)
	}
	return strings.Join(parts, " ")
}

// usageError reports a usage error on stderr and returns ExitUsage.
func (a *App) usageError(o IO, path []*Command, err error) int {
	line := a.commandLine(path)
	fmt.Fprintf(o.Stderr, "%s: %v\n", line, err)
	help := a.Name + " help"
	if len(path) > 0 {
		help = a.Name + " help " + strings.TrimPrefix(line, a.Name+" ")
	}
	fmt.Fprintf(o.Stderr, "Run '%s' for usage.\n", help)
	return ExitUsage
}

// ParseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones. "--" ends the
// flags.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" and drops it: all that is left is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func names(cmds []*Command) string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.Name)
	}
	return strings.Join(out, ", ")
}

// Walk calls fn for every command of the table that runs (not the groups),
// with the names leading to it: what tests iterate to hold every command
// to the conventions.
func (a *App) Walk(fn func(path []string, cmd *Command)) {
	var walk func(prefix []string, cmds []*Command)
	walk = func(prefix []string, cmds []*Command) {
		for _, c := range cmds {
			p := append(append([]string{}, prefix...), c.Name)
			if len(c.Subcommands) > 0 {
				walk(p, c.Subcommands)
				continue
			}
			fn(p, c)
		}
	}
	walk(nil, a.table())
}
