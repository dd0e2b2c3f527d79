// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"
)

// builtins are the commands every binary has: version, help, completion.
func (a *App) builtins() []*Command {
	return []*Command{
		{
			Name:    "version",
			Summary: "print the version",
			Help:    "Prints the version and the Go version it was built with on stdout.\n\nExample:\n  " + a.Name + " version",
			Run: func(o IO, args []string) int {
				if len(args) > 0 {
					return a.usageError(o, []*Command{{Name: "version"}}, fmt.Errorf("unexpected argument %q", args[0]))
				}
				fmt.Fprintln(o.Stdout, a.Version())
				return ExitOK
			},
		},
		{
			Name:    "help",
			Summary: "show the usage of the binary or of a command",
			Args:    "[COMMAND...]",
			Help:    "Prints the usage of " + a.Name + ", or of COMMAND, on stdout.\n\nExample:\n  " + a.Name + " help " + a.exampleCommand(),
			Run: func(o IO, args []string) int {
				if len(args) == 0 {
					a.writeUsage(o.Stdout)
					return ExitOK
				}
				path, cmd, rest := resolve(a.table(), args)
				if cmd == nil || len(rest) > 0 {
					return a.usageError(o, []*Command{{Name: "help"}}, fmt.Errorf("unknown command %q", strings.Join(args, " ")))
				}
				a.writeCommandUsage(o.Stdout, append(path, cmd))
				return ExitOK
			},
		},
		{
			Name:    "completion",
			Summary: "print a shell completion script (bash or zsh)",
			Args:    "bash|zsh",
			Help: "Prints a completion script for the shell on stdout. Load it for the session, or\n" +
				"install it where the shell finds completions.\n\nExamples:\n" +
				"  source <(" + a.Name + " completion bash)\n" +
				"  " + a.Name + " completion bash > /usr/share/bash-completion/completions/" + a.Name + "\n" +
				"  " + a.Name + " completion zsh > \"${fpath[1]}/_" + a.Name + "\"",
			Complete: []string{"bash", "zsh"},
			Run: func(o IO, args []string) int {
				if len(args) != 1 {
					return a.usageError(o, []*Command{{Name: "completion"}}, fmt.Errorf("name one shell: bash or zsh"))
				}
				switch args[0] {
				case "bash":
					a.writeBash(o.Stdout)
				case "zsh":
					a.writeZsh(o.Stdout)
				default:
					return a.usageError(o, []*Command{{Name: "completion"}}, fmt.Errorf("unknown shell %q: bash or zsh", args[0]))
				}
				return ExitOK
			},
		},
	}
}

func (a *App) exampleCommand() string {
	if len(a.Commands) > 0 {
		return a.Commands[0].Name
	}
	return "version"
}

// writeUsage writes the binary's usage: its commands, one line each.
func (a *App) writeUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s [flags] COMMAND [ARGS] [flags]\n", a.Name)
	if a.Summary != "" {
		fmt.Fprintf(w, "\n%s\n", a.Summary)
	}
	fmt.Fprintln(w, "\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var list func(prefix string, cmds []*Command)
	list = func(prefix string, cmds []*Command) {
		for _, c := range cmds {
			if len(c.Subcommands) > 0 {
				list(prefix+c.Name+" ", c.Subcommands)
				continue
			}
			fmt.Fprintf(tw, "  %s%s\t%s\n", prefix, c.Name, c.Summary)
		}
	}
	list("", a.table())
	tw.Flush()
	fmt.Fprintf(w, "\nRun '%s help COMMAND' (or '%s COMMAND --help') for what a command reads and writes.\n", a.Name, a.Name)
	fmt.Fprintf(w, "'%s --version' prints the version.\n", a.Name)
}

// writeCommandUsage writes a command's synopsis, its help and its flags;
// for a group, its commands.
func (a *App) writeCommandUsage(w io.Writer, path []*Command) {
	cmd := path[len(path)-1]
	line := a.commandLine(path)
	if len(cmd.Subcommands) > 0 {
		fmt.Fprintf(w, "usage: %s COMMAND ...\n", line)
		if cmd.Help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimRight(cmd.Help, "\n"))
		}
		fmt.Fprintln(w, "\ncommands:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range cmd.Subcommands {
			fmt.Fprintf(tw, "  %s %s\t%s\n", cmd.Name, c.Name, c.Summary)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nRun '%s help %s COMMAND' for one of them.\n", a.Name, strings.TrimPrefix(line, a.Name+" "))
		return
	}
	fs := a.flagSet(path)
	synopsis := line
	if hasFlags(fs) {
		synopsis += " [flags]"
	}
	if cmd.Args != "" {
		synopsis += " " + cmd.Args
	}
	fmt.Fprintf(w, "usage: %s\n", synopsis)
	if cmd.Summary != "" {
		fmt.Fprintf(w, "\n%s.\n", upperFirst(cmd.Summary))
	}
	if cmd.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(cmd.Help, "\n"))
	}
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fmt.Fprintln(w, "\nFlags may come before or after the arguments; -h, --help prints this.")
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// VersionLine is what `--version` prints for the binary name built as
// version ("dev" unless set at build time): the version, or for a dev
// build the commit, and the Go version.
func VersionLine(name, version string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " " + version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && version == "dev" {
			version = "dev-" + s.Value[:min(12, len(s.Value))]
		}
	}
	return fmt.Sprintf("%s %s (%s)", name, version, strings.TrimPrefix(bi.GoVersion, "go"))
}
