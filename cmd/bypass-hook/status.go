// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"slices"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/status"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

func statusCommand(g *globals) *cli.Command {
	var asJSON, summary bool
	var namespace, pod string
	return &cli.Command{
		Name:    "status",
		Summary: "show the rules and packet counters of fenced containers",
		Args:    "[--namespace NS] [--pod NAME] [CONTAINER]",
		Help: `Lists every fence recorded in the config's stateDir, or the one of CONTAINER
(an id or a unique prefix of one, or a podman container or pod name), with its
rules and the packets each matched; marks fences that are not whole and owners
whose process is gone. Owners are named by their Kubernetes pod where the
runtime gave it; --namespace and --pod keep those pods' fences. Selected
containers that the NRI plugin found running unfenced and could not fence are
listed under NOT FENCED (and make the exit 1).
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
			fs.StringVar(&namespace, "namespace", "", "only the fences of pods in this Kubernetes namespace")
			fs.StringVar(&pod, "pod", "", "only the fences of the pods of this name")
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
			fences = status.Filter(fences, namespace, pod)
			unfenced, uerr := store.Unfenced()
			if uerr != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook status: %v\n", uerr)
			}
			if id != "" {
				unfenced = nil // one fence was asked for
			}
			unfenced = slices.DeleteFunc(unfenced, func(u records.Unfenced) bool {
				return (namespace != "" && u.Namespace != namespace) || (pod != "" && u.Pod != pod)
			})
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
			if err == nil && !asJSON {
				err = status.WriteUnfenced(o.Stdout, unfenced)
			}
			if err != nil {
				fmt.Fprintf(o.Stderr, "bypass-hook status: writing: %v\n", err)
				return 1
			}
			if w := kernelLogWarning(cfg); w != "" && !asJSON {
				fmt.Fprintf(o.Stderr, "bypass-hook status: warning: %s\n", w)
			}
			code := 0
			if len(unfenced) > 0 {
				code = 1 // a selected container runs without the fence
			}
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
