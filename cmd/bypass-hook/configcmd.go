// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"strconv"
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
				Summary: "read FILE (by default the hook's config) as the hook would and say what it lets out, or what is wrong",
				Args:    "[FILE]",
				Flags:   g.configFlag,
				Help: `Reads FILE (YAML; JSON is valid YAML) as the hook reads it. With no FILE,
the file the hook reads: --config, then $BYPASS_HOOK_CONFIG, then
/etc/bypass-hook/config.yaml (which may be absent: then the defaults apply).
Writes: on stdout, which file it read and why, which containers the config
selects and every way out it leaves them (proxies, allow, dns, allowUids,
otherProtocols); on error one line on stderr that names the file and the
line of a YAML error, or the key and the value at fault, as the hook would
log it. Changes nothing.
Exit: 0 valid, 2 not.

Examples:
  bypass-hook config validate
  bypass-hook config validate /etc/bypass-hook/config.yaml`,
				Run: func(o cli.IO, args []string) int { return validateConfig(o, g, args) },
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

// validateConfig is `config validate [FILE]`.
func validateConfig(o cli.IO, g *globals, args []string) int {
	usage := func(msg string) int {
		fmt.Fprintf(o.Stderr, "bypass-hook config validate: %s\nRun 'bypass-hook help config validate' for usage.\n", msg)
		return cli.ExitUsage
	}
	var src config.Source
	var why string
	switch {
	case len(args) > 1:
		return usage("name at most one FILE")
	case len(args) == 1 && g.config != "":
		return usage("name the file either as FILE or with --config, not both")
	case len(args) == 1:
		src = config.Source{Path: args[0], Explicit: true}
	default:
		src = config.Locate(g.config)
		why = configOrigin(g.config)
	}
	cfg, err := src.Load()
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook config validate: %v\n", err)
		return cli.ExitUsage
	}
	switch {
	case why == "":
		fmt.Fprintf(o.Stdout, "%s: valid; %s\n", src.Path, describeConfig(cfg))
	case cfg.Path == "":
		fmt.Fprintf(o.Stdout, "%s (%s) does not exist: the hook applies the defaults; %s\n", src.Path, why, describeConfig(cfg))
	default:
		fmt.Fprintf(o.Stdout, "%s (%s): valid; %s\n", src.Path, why, describeConfig(cfg))
	}
	return 0
}

// configOrigin says why config.Locate picked the file it picked.
func configOrigin(flagValue string) string {
	switch {
	case flagValue != "":
		return "named by --config"
	case os.Getenv(config.EnvVar) != "":
		return "named by $" + config.EnvVar
	}
	return "the default path"
}

// describeConfig says in one line what a valid config fences and every way
// out it leaves a fenced container, so that no allow entry hides behind
// the proxies.
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
	ways := []string{"to the proxies " + strings.Join(proxies, ", ")}
	for _, a := range cfg.Allow {
		ways = append(ways, "to "+describeAllow(a))
	}
	if len(cfg.DNS) > 0 {
		ways = append(ways, "to "+strings.Join(cfg.DNS, ", ")+" on port 53 (dns)")
	}
	if len(cfg.AllowUids) > 0 {
		var us []string
		for _, u := range cfg.AllowUids {
			us = append(us, strconv.FormatInt(u, 10))
		}
		ways = append(ways, "from uids "+strings.Join(us, ", ")+" to anywhere (allowUids)")
	}
	if cfg.OtherProtocols == config.OtherAccept {
		ways = append(ways, "ICMP to anywhere (otherProtocols: accept)")
	}
	return fmt.Sprintf("%s: %s direct connections except %s", sel, verb, strings.Join(ways, "; "))
}

// describeAllow is one allow entry as the rules read it.
func describeAllow(a config.Allow) string {
	proto := a.Protocol
	if proto == "" || proto == "any" {
		proto = "any protocol"
	}
	ports := "all ports"
	if len(a.Ports) > 0 {
		var ps []string
		for _, p := range a.Ports {
			ps = append(ps, strconv.Itoa(p))
		}
		ports = "ports " + strings.Join(ps, ",")
	}
	return fmt.Sprintf("%s, %s, %s (allow)", a.CIDR, proto, ports)
}
