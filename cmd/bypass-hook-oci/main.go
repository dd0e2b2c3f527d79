// SPDX-License-Identifier: Apache-2.0

// Command bypass-hook-oci is the OCI hook that runtimes run for every
// container: the create, poststop and hook stages of bypass-hook, with the
// same flags, config, help and exit codes (internal/stages, internal/cli),
// and nothing else linked in, so that a container's start waits on little
// more than an empty Go program's start. The CLI, bypass-hook, registers it
// and does everything else (install, nri, monitor, status, check). See
// docs/bench.md.
package main

import (
	"flag"
	"os"

	"github.com/bypass-hook/bypass-hook/internal/cli"
	"github.com/bypass-hook/bypass-hook/internal/stages"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(newApp().Main(os.Args[1:], cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}

func newApp() *cli.App {
	return &cli.App{
		Name:     "bypass-hook-oci",
		Version:  versionLine,
		Summary:  "The OCI hook of bypass-hook, as runtimes run it for each container: it fences the\ncontainer's network namespace at create and removes the fence at poststop.\nbypass-hook (the CLI) registers it and does everything else.",
		Commands: stages.Commands("bypass-hook-oci"),
		// The stages' flags, which may also come before the stage's name.
		Globals: func(fs *flag.FlagSet) {
			fs.String("config", "", cli.ConfigUsage)
			fs.Bool("debug", false, "")
		},
	}
}

func versionLine() string { return cli.VersionLine("bypass-hook-oci", version) }
