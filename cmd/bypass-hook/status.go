// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/bypass-hook/bypass-hook/check"
	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/cli"
	"github.com/bypass-hook/bypass-hook/status"
)

// statusFlags are the status command's flags.
type statusFlags struct {
	g               *globals
	asJSON, summary bool
	namespace, pod  string
	monitor         string // the monitor's metrics address, "" for none
}

func statusCommand(g *globals) *cli.Command {
	f := &statusFlags{g: g}
	return &cli.Command{
		Name:    "status",
		Summary: "show the rules and packet counters of fenced containers",
		Args:    "[--namespace NS] [--pod NAME] [CONTAINER]",
		Help: `Lists every fence recorded in the config's stateDir, or the one of CONTAINER
(an id or a unique prefix of one, or a podman container or pod name), with its
rules and the packets each matched; marks fences that are not whole and owners
whose process is gone; under each, the last attempts the monitor saw, with the
process that made them (asked of the monitor at --monitor; none are shown when
no monitor answers there within a second). Owners are named by their Kubernetes
pod where the runtime gave it; --namespace and --pod keep those pods' fences. Selected
containers that the NRI plugin found running unfenced and could not fence are
listed under NOT FENCED (and make the exit 1, as does a list of them that
cannot be read).
Reads: the config, the state directory, the rules in each fenced namespace,
the monitor's http://ADDR/attempts.
Writes: the report on stdout; changes nothing.
Exit: 0 every fence asked for was read and is whole, 1 one was not found, not
read or not whole (a rule put in front of it, a rule changed or gone), 2 usage
or config error.

Examples:
  sudo bypass-hook status --summary
  sudo bypass-hook status web --json`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			fs.BoolVar(&f.asJSON, "json", false, "print JSON: a list of fences with their rules and counters")
			fs.BoolVar(&f.summary, "summary", false, "one line per fence instead of its rules")
			fs.StringVar(&f.namespace, "namespace", "", "only the fences of pods in this Kubernetes namespace")
			fs.StringVar(&f.pod, "pod", "", "only the fences of the pods of this name")
			fs.StringVar(&f.monitor, "monitor", DefaultMetricsAddr, `ask the monitor whose metrics are at ADDR for each fence's recent attempts ("" for none; not with --summary)`)
		},
		Run: f.run,
	}
}

func (f *statusFlags) run(o cli.IO, args []string) int {
	if len(args) > 1 {
		fmt.Fprintf(o.Stderr, "bypass-hook status: one container at most, got %d arguments\n", len(args))
		return cli.ExitUsage
	}
	cfg, err := config.Load(f.g.config)
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
		fmt.Fprintf(o.Stderr, "bypass-hook status: %v%s\n", err, rootHint("status", err, os.Geteuid()))
		return 1
	}
	fences = status.Filter(fences, f.namespace, f.pod)
	f.addRecent(o, fences)
	unfenced, unknown := f.unfenced(o, store, id)
	if err := f.write(o, fences, unfenced); err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook status: writing: %v\n", err)
		return 1
	}
	if w := check.KernelLogWarning(logTargetShown(cfg.Log.Target, fences)); w != "" && !f.asJSON {
		fmt.Fprintf(o.Stderr, "bypass-hook status: warning: %s\n", w)
	}
	code := statusExit(o, fences, unfenced)
	if unknown {
		code = 1
	}
	return code
}

// monitorWait is how long status waits for the monitor: one on this node
// answers at once, and status must not hang on an address nothing serves.
const monitorWait = time.Second

// addRecent gives the fences the recent attempts the monitor saw; when no
// monitor answers, one line says why none are shown.
func (f *statusFlags) addRecent(o cli.IO, fences []status.FenceStatus) {
	if f.monitor == "" || f.summary || len(fences) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), monitorWait)
	defer cancel()
	attempts, err := status.Recent(ctx, f.monitor)
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook status: no monitor answered at %s, so no recent attempts are shown (start 'bypass-hook monitor', or give its --metrics-addr with --monitor ADDR): %v\n", f.monitor, err)
		return
	}
	status.AddRecent(fences, attempts)
}

// unfenced are the selected containers the NRI plugin could not fence,
// kept to the pods asked for. Their list failing to read is said on
// stderr, and the fences are shown all the same; unknown then says that
// status cannot tell whether a selected container runs unfenced, which
// must not pass for "all fenced".
func (f *statusFlags) unfenced(o cli.IO, store *records.Store, id string) (list []records.Unfenced, unknown bool) {
	if id != "" {
		return nil, false // one fence was asked for
	}
	unfenced, err := store.Unfenced()
	if err != nil {
		fmt.Fprintf(o.Stderr, "bypass-hook status: %v; which selected containers run unfenced is unknown\n", err)
	}
	return slices.DeleteFunc(unfenced, func(u records.Unfenced) bool {
		return (f.namespace != "" && u.Namespace != f.namespace) || (f.pod != "" && u.Pod != f.pod)
	}), err != nil
}

// write prints the fences as JSON, a summary or in detail; the unfenced
// containers only in the tables, as the JSON is a list of fences.
func (f *statusFlags) write(o cli.IO, fences []status.FenceStatus, unfenced []records.Unfenced) error {
	// A node of many fences makes thousands of lines: written a buffer at
	// a time, not a line at a time.
	w := bufio.NewWriter(o.Stdout)
	var err error
	switch {
	case f.asJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(fences)
	case f.summary:
		err = status.WriteSummary(w, fences)
	default:
		err = status.WriteDetails(w, fences)
	}
	if err == nil && !f.asJSON {
		err = status.WriteUnfenced(w, unfenced)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// statusExit reports each fence that was not read or is not whole, and
// returns 1 if there is one or a selected container runs unfenced.
func statusExit(o cli.IO, fences []status.FenceStatus, unfenced []records.Unfenced) int {
	code := 0
	if len(unfenced) > 0 {
		code = 1 // a selected container runs without the fence
	}
	for _, f := range fences {
		if f.Error != "" {
			fmt.Fprintf(o.Stderr, "bypass-hook status: container %s: %s\n", f.Container, f.Error)
			code = 1
		}
		if f.Incomplete != "" {
			fmt.Fprintf(o.Stderr, "bypass-hook status: container %s: the record is incomplete: %s\n", f.Container, status.IncompleteText(f.Incomplete))
			code = 1
		}
		if f.Whole != nil && !*f.Whole {
			fmt.Fprintf(o.Stderr, "bypass-hook status: container %s: the fence is not whole: %s\n", f.Container, f.NotWhole)
			code = 1
		}
	}
	return code
}

// logTargetShown is the log target that matters for the fences shown:
// theirs as recorded (an annotation may pick another than the config's),
// kernel if any of them logs there; the config's own when no fence is
// shown.
func logTargetShown(configured string, fences []status.FenceStatus) string {
	if len(fences) == 0 {
		return configured
	}
	for _, f := range fences {
		if f.Features.Log && f.Log.Target == config.LogKernel {
			return config.LogKernel
		}
	}
	return config.LogNflog
}
