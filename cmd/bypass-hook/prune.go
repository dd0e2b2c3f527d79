// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

func pruneCommand(g *globals) *cli.Command {
	var grace time.Duration
	var asJSON bool
	return &cli.Command{
		Name:    "prune",
		Summary: "remove fences whose every owner is stale and whose namespace no process uses",
		Help: `Takes out the fences whose owners' processes are all gone (or their pids reused
by other processes, or moved to another namespace), as the last owner's poststop
would: a runtime whose start fails (podman) may never call poststop, and the
namespace then lives on, fenced for nobody. A fence whose namespace still has a
process in it (any thread, or a socket made in it) is kept and said so,
whatever its owners did: a workload controls its own pid 1, which can leave
while a worker stays. A fence goes once its owners have been seen stale for --grace, time
for a poststop on its way; a fence first seen stale now is waited for here, so
one run does the job. The monitor prunes the same way as it runs.
Reads: the config, the state directory, /proc (every process's namespaces and sockets, for the fences whose owners are all stale).
Writes: removes those fences and their records; the hook log.
Exit: 0 done, 1 a fence could not be removed, 2 usage or config error.

Example:
  sudo bypass-hook prune --grace 10s`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			fs.DurationVar(&grace, "grace", hook.DefaultPruneGrace, "how long a fence's owners must have been seen stale: time for a poststop on its way")
			fs.BoolVar(&asJSON, "json", false, "print the fences taken out as JSON")
		},
		Run: func(o cli.IO, args []string) int {
			if !noArgs(o, "prune", args, "") {
				return cli.ExitUsage
			}
			if grace < 0 {
				fmt.Fprintf(o.Stderr, "bypass-hook prune: --grace %s is negative\n", grace)
				return cli.ExitUsage
			}
			return runPrune(g, grace, asJSON, o)
		},
	}
}

func runPrune(g *globals, grace time.Duration, asJSON bool, o cli.IO) int {
	cfg, err := config.Load(g.config)
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook prune: %v\n", err)
		return cli.ExitUsage
	}
	log, closeLog, logErr := hook.OpenLog(cfg.HookLog, false, io.Discard)
	defer closeLog()
	if logErr != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook prune: %v; logging nowhere\n", logErr)
	}
	h := hook.New(cfg, log.WithField("stage", "prune"))

	pruned, kept, next, err := h.RemoveAbandonedFences(grace, time.Now())
	if err == nil && !next.IsZero() {
		// Seen stale just now (or lately): wait out the grace period and
		// look again; an owner seen running meanwhile keeps its fence.
		fmt.Fprintf(o.Stderr, "bypass-hook prune: waiting %s for a poststop on its way (--grace)\n", time.Until(next).Round(time.Second))
		time.Sleep(time.Until(next))
		var more []hook.Pruned
		more, kept, _, err = h.RemoveAbandonedFences(grace, time.Now())
		pruned = append(pruned, more...)
	}
	switch {
	case asJSON:
		// Kept fences have an action of "kept: ..." beside the removed.
		all := append(append([]hook.Pruned{}, pruned...), kept...)
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(all)
	case len(pruned) == 0 && len(kept) == 0:
		fmt.Fprintln(o.Stdout, "no fence left only to stale owners")
	default:
		for _, p := range pruned {
			fmt.Fprintf(o.Stdout, "%s: %s (owners %v, their processes gone)\n", p.Netns, p.Action, p.Owners)
		}
		for _, p := range kept {
			fmt.Fprintf(o.Stdout, "%s: %s\n", p.Netns, p.Action)
		}
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook prune: %v\n", err)
		return 1
	}
	return 0
}
