package main

import (
	"encoding/json"
	"flag"
	"fmt"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/status"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

func statusCommand(g *globals) *cli.Command {
	var asJSON, summary bool
	return &cli.Command{
		Name:    "status",
		Summary: "show the rules and packet counters of fenced containers",
		Args:    "[CONTAINER]",
		Help: `Lists every fence recorded in the config's stateDir, or the one of CONTAINER
(an id or a unique prefix of one, or a podman container or pod name), with its
rules and the packets each matched; marks fences that are not whole and owners
whose process is gone.
Reads: the config, the state directory, the rules in each fenced namespace.
Writes: the report on stdout; changes nothing.
Exit: 0 every fence asked for was read and is whole, 1 one was not found, not
read or not whole (a rule put in front of it, a rule changed or gone), 2 usage
or config error.

Examples:
  sudo bypass-hook status --summary
  sudo bypass-hook status web --json`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			fs.BoolVar(&asJSON, "json", false, "print JSON: a list of fences with their rules and counters")
			fs.BoolVar(&summary, "summary", false, "one line per fence instead of its rules")
		},
		Run: func(o cli.IO, args []string) int {
			if len(args) > 1 {
				fmt.Fprintf(o.Stderr, "bypass-hook status: one container at most, got %d arguments\n", len(args))
				return cli.ExitUsage
			}
			cfg, err := config.Load(g.config)
			if err != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook status: %v\n", err)
				return cli.ExitUsage
			}
			store, err := records.Open(cfg.StateDir)
			if err != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook status: %v\n", err)
				return 1
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			fences, err := status.Read(store, id, backend.New)
			if err != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook status: %v\n", err)
				return 1
			}
			switch {
			case asJSON:
				enc := json.NewEncoder(o.Stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(fences)
			case summary:
				err = status.WriteSummary(o.Stdout, fences)
			default:
				err = status.WriteDetails(o.Stdout, fences)
			}
			if err != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook status: writing: %v\n", err)
				return 1
			}
			if w := kernelLogWarning(cfg); w != "" && !asJSON {
				fmt.Fprintf(o.Stderr, "bypass-hook status: warning: %s\n", w)
			}
			code := 0
			for _, f := range fences {
				if f.Error != "" {
					fmt.Fprintf(o.Stderr, "bypass-hook status: container %s: %s\n", f.Container, f.Error)
					code = 1
				}
				if f.Whole != nil && !*f.Whole {
					fmt.Fprintf(o.Stderr, "bypass-hook status: container %s: the fence is not whole: %s\n", f.Container, f.NotWhole)
					code = 1
				}
			}
			return code
		},
	}
}
