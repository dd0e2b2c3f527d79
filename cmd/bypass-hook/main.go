// Command bypass-hook is an OCI runtime hook that fences a container's
// egress to its HTTP CONNECT proxy, and the CLI that registers it, runs the
// NRI plugin and the monitor and shows the fences. Runtimes run
// bypass-hook-oci, the hook alone; the stage commands here are the same
// ones (internal/cli). See README.md.
package main

import (
	"flag"
	"io"
	"os"

	"github.com/bypass-hook/bypass-hook/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// program is the CLI: the hook's stages, then the rest, in the order the
// help shows them.
var program = &cli.Program{Name: "bypass-hook"}

func init() {
	program.Version = version
	program.Commands = append(program.StageCommands(),
		cli.Command{Name: "nri", Summary: "run as a containerd NRI plugin that injects the hook", Run: runNRI},
		cli.Command{Name: "install", Summary: "write registrations: hooks.d file, bundle hooks, binary and config for the NRI DaemonSet", Run: runInstall},
		cli.Command{Name: "monitor", Summary: "print bypass attempts as JSON lines on stdout, serve metrics", Run: runMonitor},
		cli.Command{Name: "status", Summary: "show the rules and packet counters of fenced containers", Run: runStatus},
		program.VersionCommand(),
	)
	program.Bare = func(g *cli.Globals, stdin io.Reader, stdout, stderr io.Writer) int {
		if os.Getenv(nriSocketEnv) == "" {
			program.Usage(stderr)
			return 2
		}
		// containerd starts a pre-registered NRI plugin (a link to this
		// binary in its plugin directory) without arguments.
		return runNRI(g, nil, stdin, stdout, stderr)
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return program.Run(args, stdin, stdout, stderr)
}

// subFlags returns a flag set for a subcommand that also takes the globals.
func subFlags(name string, g *cli.Globals, stderr io.Writer) *flag.FlagSet {
	return program.SubFlags(name, g, stderr)
}
