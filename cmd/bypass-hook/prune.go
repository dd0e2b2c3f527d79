package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
)

// runPrune takes out the fences left only to stale owners (their processes
// gone without a poststop). A fence first seen stale now is given the grace
// period, waited out here, so that one run does the job. It exits 0 when
// every such fence was taken out or is still in its grace period, 1 when
// one could not be, 2 on a usage or config error.
func runPrune(g *globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := subFlags("prune", g, stderr)
	grace := fs.Duration("grace", hook.DefaultPruneGrace, "how long a fence's owners must have been seen stale: time for a poststop on its way")
	asJSON := fs.Bool("json", false, "print the fences taken out as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bypass-hook prune [--config FILE] [--grace DURATION] [--json]")
		fmt.Fprintln(stderr, "  remove the fences whose every owner's process is gone (a runtime whose start failed never ran poststop)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *grace < 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(g.config)
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook prune: %v\n", err)
		return 2
	}
	log, closeLog, logErr := hook.OpenLog(cfg.HookLog, g.debug, io.Discard)
	defer closeLog()
	if logErr != nil {
		fmt.Fprintf(stderr, "bypass-hook prune: %v; logging nowhere\n", logErr)
	}
	h := hook.New(cfg, log.WithField("stage", "prune"))

	pruned, next, err := h.PruneStale(*grace, time.Now())
	if err == nil && !next.IsZero() {
		// Marked stale just now (or lately): wait out the grace period and
		// look again; an owner seen running meanwhile keeps its fence.
		fmt.Fprintf(stderr, "bypass-hook prune: waiting %s for a poststop on its way (--grace)\n", time.Until(next).Round(time.Second))
		time.Sleep(time.Until(next))
		var more []hook.Pruned
		more, _, err = h.PruneStale(*grace, time.Now())
		pruned = append(pruned, more...)
	}
	if *asJSON {
		if pruned == nil {
			pruned = []hook.Pruned{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(pruned)
	} else {
		for _, p := range pruned {
			fmt.Fprintf(stdout, "%s: %s (owners %v, their processes gone)\n", p.Netns, p.Action, p.Owners)
		}
		if len(pruned) == 0 {
			fmt.Fprintln(stdout, "no fence left only to stale owners")
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook prune: %v\n", err)
		return 1
	}
	return 0
}
