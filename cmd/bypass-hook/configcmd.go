// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strings"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

func configCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:    "config",
		Summary: "check a config file, or print the annotated example",
		Help:    "Commands about the config file (/etc/bypass-hook/config.yaml by default).",
		Subcommands: []*cli.Command{
			{
				Name:    "validate",
				Summary: "read FILE as the hook would and say what it selects, or what is wrong",
				Args:    "FILE",
				Help: `Reads FILE (YAML; JSON is valid YAML) as the hook reads it.
Writes: on stdout, what the config selects; on error one line on stderr that
names the file and the line of a YAML error, or the key and the value at
fault, as the hook would log it. Changes nothing.
Exit: 0 valid, 2 not.

Example:
  bypass-hook config validate /etc/bypass-hook/config.yaml`,
				Run: func(o cli.IO, args []string) int {
					if len(args) != 1 {
						fmt.Fprintln(o.Stderr, "bypass-hook config validate: name one FILE\nRun 'bypass-hook help config validate' for usage.")
						return cli.ExitUsage
					}
					cfg, err := config.Source{Path: args[0], Explicit: true}.Load()
					if err != nil {
						fmt.Fprintf(o.Stderr, "bypass-hook config validate: %v\n", err)
						return cli.ExitUsage
					}
					fmt.Fprintf(o.Stdout, "%s: valid; %s\n", args[0], describeConfig(cfg))
					return 0
				},
			},
			{
				Name:    "default",
				Summary: "print the annotated example config (the defaults) on stdout",
				Help: `Writes the example config that make install and the packages put at
/etc/bypass-hook/config.yaml when there is none: every key with its default
and what it does. Reads nothing.

Example:
  bypass-hook config default > /etc/bypass-hook/config.yaml`,
				Run: func(o cli.IO, args []string) int {
					if !noArgs(o, "config default", args, "") {
						return cli.ExitUsage
					}
					_, err := o.Stdout.Write(install.ExampleConfig)
					if err != nil {
						return 1
					}
					return 0
				},
			},
		},
	}
}

// describeConfig says in one line what a valid config fences.
func describeConfig(cfg *config.Config) string {
	var proxies []string
	for _, p := range cfg.ProxyAddrs() {
		proxies = append(proxies, p.String())
	}
	if len(proxies) == 0 {
		return "no proxies: it fences nothing"
	}
	sel := "every container"
	if cfg.Selection == config.SelectAnnotated {
		sel = "containers annotated bypass-hook.io/enabled=true"
	}
	verb := "refuses and logs"
	if cfg.Mode == config.ModeAudit {
		verb = "logs (audit; refuses nothing)"
	}
	return fmt.Sprintf("%s: %s direct connections except to %s", sel, verb, strings.Join(proxies, ", "))
}
