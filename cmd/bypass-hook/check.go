// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"fmt"

	"github.com/bypass-hook/bypass-hook/check"
	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

func checkCommand(g *globals) *cli.Command {
	var asJSON, noSelfTest bool
	return &cli.Command{
		Name:    "check",
		Summary: "can this node fence? kernel, tools, config, registrations, and a live self-test",
		Help: `Says whether this node can fence containers with the config, and what to fix if
not: the kernel's netfilter pieces, which backend the config picks, the
iptables tools and their mode, nf_log_all_netns, the config (valid? selects
what?), the state directory, every registration found (hooks.d files, CDI
specs, the NRI plugin), then a live self-test: it fences a throwaway network
namespace of its own (a dummy link; no traffic leaves it), sees a direct
connection refused and its log line, whether the monitor's eBPF programs name
the process that made it and report an AF_VSOCK send (a family that goes past
the fence), removes the fence and reports the times.
Reads: the config, /proc, /sys, the kernel config, the registration directories.
Writes: nothing outside the throwaway namespace and a temporary state
directory; the report on stdout (a table, or JSON with --json).
Exit: 0 this node can fence with this config, 1 it cannot, 2 usage or config error.
The self-test needs root; without it the check cannot say yes.

Examples:
  sudo bypass-hook check
  sudo bypass-hook check --config /etc/bypass-hook/config.yaml --json | jq .canFence`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON (for scripts)")
			fs.BoolVar(&noSelfTest, "no-self-test", false, "skip the live self-test (the verdict then rests on the static checks)")
		},
		Run: func(o cli.IO, args []string) int {
			if !noArgs(o, "check", args, "") {
				return cli.ExitUsage
			}
			path := config.Locate(g.config).Path
			cfg, err := config.Load(g.config)
			if cfg != nil && cfg.Path != "" {
				path = cfg.Path
			} else if err == nil {
				path = ""
			}
			r := check.Run(check.Options{Config: cfg, ConfigPath: path, ConfigErr: err, SelfTest: !noSelfTest})
			write := r.WriteTable
			if asJSON {
				write = r.WriteJSON
			}
			if werr := write(o.Stdout); werr != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook check: writing the report: %v\n", werr)
				return 1
			}
			switch {
			case err != nil:
				return cli.ExitUsage
			case !r.CanFence:
				return 1
			}
			return 0
		},
	}
}
