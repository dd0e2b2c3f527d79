// Command bypass-hook-oci is the OCI hook that runtimes run for every
// container: the create, poststop and hook stages of bypass-hook, with the
// same flags, config and exit codes, and nothing else linked in, so that a
// container's start waits on little more than an empty Go program's start.
// The CLI, bypass-hook, registers it and does everything else (install,
// nri, monitor, status). See README.md.
package main

import (
	"os"

	"github.com/bypass-hook/bypass-hook/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	p := &cli.Program{Name: "bypass-hook-oci", Version: version}
	p.Commands = append(p.StageCommands(), p.VersionCommand())
	os.Exit(p.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
