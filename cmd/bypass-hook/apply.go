// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

func applyCommand(g *globals) *cli.Command {
	var asJSON bool
	return &cli.Command{
		Name:    "apply",
		Summary: "bring every running fence to the current config (atomic, per namespace)",
		Help: `Replaces the fence of every fenced network namespace with the one the current
config gives, atomically, without restarting a container: what a container's
annotations asked for (a mode, a subset of the proxies) is kept, the rest is the
config's. Run it after changing the config; the NRI plugin runs it whenever it
loads a changed config. A fence whose annotations the config no longer allows (a
proxy they named is gone) is left as it was and reported. Nothing is removed.
Reads: the config, the state directory, the namespaces' rules.
Writes: the fences that differ from the config, their records; the hook log.
Exit: 0 every fence follows the config, 1 one could not be brought to it, 2 usage or config error.

Example:
  sudo bypass-hook apply`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			fs.BoolVar(&asJSON, "json", false, "print what was done to each fence as JSON")
		},
		Run: func(o cli.IO, args []string) int {
			if !noArgs(o, "apply", args, "") {
				return cli.ExitUsage
			}
			return runApply(g, asJSON, o)
		},
	}
}

func runApply(g *globals, asJSON bool, o cli.IO) int {
	cfg, err := config.Load(g.config)
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook apply: %v\n", err)
		return cli.ExitUsage
	}
	log, closeLog, logErr := hook.OpenLog(cfg.HookLog, false, io.Discard)
	defer closeLog()
	if logErr != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook apply: %v; logging nowhere\n", logErr)
	}
	applied, err := hook.New(cfg, log.WithField("stage", "apply")).Apply()
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook apply: %v\n", err)
		return 1
	}
	failed := 0
	for _, a := range applied {
		if a.Error != "" {
			failed++
		}
	}
	switch {
	case asJSON:
		if applied == nil {
			applied = []hook.Applied{}
		}
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(applied)
	case len(applied) == 0:
		fmt.Fprintln(o.Stdout, "no fence on this node")
	default:
		for _, a := range applied {
			line := fmt.Sprintf("%s: %s (owners %v, %s", a.Netns, a.Action, a.Owners, a.Backend)
			switch {
			case a.Action == hook.AppliedReplaced:
				line += fmt.Sprintf(", policy %s -> %s)", a.OldDigest, a.NewDigest)
			default:
				line += fmt.Sprintf(", policy %s)", a.OldDigest)
			}
			if a.Error != "" {
				line += ": " + a.Error
			}
			fmt.Fprintln(o.Stdout, line)
		}
	}
	if failed > 0 {
		fmt.Fprintf(o.Stderr, "bypass-hook apply: %d of %d fences could not be brought to the config (see above)\n", failed, len(applied))
		return 1
	}
	return 0
}
