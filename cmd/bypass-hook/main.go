// SPDX-License-Identifier: Apache-2.0

// Command bypass-hook is an OCI runtime hook that fences a container's
// egress to its HTTP CONNECT proxy. See README.md.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/bypass-hook/bypass-hook/internal/cli"
	"github.com/bypass-hook/bypass-hook/internal/stages"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(newApp().Main(os.Args[1:], cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}

// globals are the flags that may come before the command's name. Each
// command registers those it takes, so that one it does not take is an
// error rather than ignored.
type globals struct {
	config string
	debug  bool
}

func (g *globals) configFlag(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", "", cli.ConfigUsage)
}

// debugFlag registers --debug with what it does for this command.
func (g *globals) debugFlag(fs *flag.FlagSet, does string) {
	fs.BoolVar(&g.debug, "debug", false, does)
}

// newApp is the binary: the one table of its commands, in the order the
// help lists them. A command gets -h, help COMMAND and completion by being
// here.
func newApp() *cli.App {
	g := &globals{}
	return &cli.App{
		Name:    "bypass-hook",
		Version: versionLine,
		Summary: "Fences a container's network namespace so that only its HTTP CONNECT proxy is\nreachable; every direct connection is refused at once and logged.",
		Globals: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			g.debugFlag(fs, "")
		},
		Commands: append(stages.Commands("bypass-hook"),
			nriCommand(g),
			installCommand(g),
			monitorCommand(g),
			statusCommand(g),
			pruneCommand(g),
			applyCommand(g),
			checkCommand(g),
			configCommand(g),
		),
		NoArgs: preRegisteredNRI(g),
	}
}

func versionLine() string { return cli.VersionLine("bypass-hook", version) }

// noArgs reports a command's unexpected positional argument.
func noArgs(o cli.IO, name string, args []string, why string) bool {
	if len(args) == 0 {
		return true
	}
	fmt.Fprintf(o.Stderr, "bypass-hook %s: unexpected argument %q%s\nRun 'bypass-hook help %s' for usage.\n", name, args[0], why, name)
	return false
}
