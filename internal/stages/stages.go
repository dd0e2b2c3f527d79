// SPDX-License-Identifier: Apache-2.0

// Package stages is the hook's stage commands (create, poststop, hook) as
// cli commands, so that every binary that runs them (bypass-hook, and a
// lean one for the per-container stages) runs and documents them alike.
package stages

import (
	"flag"
	"fmt"
	"io"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

var stageHelp = map[string]struct{ summary, reads, example string }{
	"create": {
		summary: "the createRuntime (or prestart) stage: fence the container; the OCI state comes on stdin",
		reads:   "Puts the fence into the network namespace of the state's pid",
		example: `{"ociVersion":"1.0.2","id":"web","status":"created","pid":4242,"bundle":"/run/web"}`,
	},
	"poststop": {
		summary: "the poststop stage: remove the container's fence; the OCI state comes on stdin",
		reads:   "Removes the container from its fence's owners, and the fence with the last owner",
		example: `{"ociVersion":"1.0.2","id":"web","status":"stopped","bundle":"/run/web"}`,
	},
	"hook": {
		summary: "either stage, chosen from the OCI state's status (on stdin)",
		reads:   "Runs create for status creating or created, poststop for stopped",
		example: `{"ociVersion":"1.0.2","id":"web","status":"created","pid":4242,"bundle":"/run/web"}`,
	},
}

// Commands are create, poststop and hook, for the binary named bin.
func Commands(bin string) []*cli.Command {
	return []*cli.Command{command(bin, "create"), command(bin, "poststop"), command(bin, "hook")}
}

// flags are a stage's flags.
type flags struct {
	config string
	debug  bool
	device string // the CDI device the container requested, passed by the CDI spec
}

// command is a hook stage, as runtimes run it.
func command(bin, which string) *cli.Command {
	h := stageHelp[which]
	g := &flags{}
	return &cli.Command{
		Name:    which,
		Summary: h.summary,
		Help: h.reads + `.
Reads: the OCI state (runtime-spec State JSON) on stdin, as the runtime passes
it; the config; the bundle's config.json (the process's capabilities).
Writes: the rules in the container's network namespace (never the host's), a
record in the config's stateDir, and one JSON line to the config's hookLog.
Nothing to stdout; on failure one line to stderr, which the runtime shows.
Exit: 0 done (or nothing to do), 1 could not fence (failure: closed), 2 usage,
input or config error.

Example (what a runtime does):
  echo '` + h.example + `' | ` + bin + ` ` + which,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&g.config, "config", "", cli.ConfigUsage)
			fs.BoolVar(&g.debug, "debug", false, "also write the OCI state read and the config used to the hook log (level debug)")
			fs.StringVar(&g.device, config.DeviceFlag, "", "the CDI device of "+config.CDIKind+" the container requested (the CDI spec's hooks pass it): it counts as the annotation "+config.AnnEnabled+"=true")
		},
		Run: func(o cli.IO, args []string) int {
			if len(args) > 0 {
				fmt.Fprintf(o.Stderr, "%s %s: unexpected argument %q: the OCI state comes on stdin\nRun '%s help %s' for usage.\n", bin, which, args[0], bin, which)
				return cli.ExitUsage
			}
			return run(g, bin, which, o.Stdin, o.Stderr)
		},
	}
}

// run runs create, poststop, or (for "hook") the stage the state's
// status calls for. It writes nothing to stdout: a runtime may not read it.
func run(g *flags, bin, which string, stdin io.Reader, stderr io.Writer) int {
	// The hook log's times are UTC: runtimes give hooks no TZ, and reading
	// the zone file for local time would cost every hook run.
	time.Local = time.UTC
	start := time.Now()
	cfg, cfgErr := config.Load(g.config)
	logPath := config.Default().HookLog
	failure := config.FailClosed
	if cfgErr == nil {
		logPath, failure = cfg.HookLog, cfg.Failure
	}
	// Without a hook log the detail goes nowhere: standard error gets one
	// line, on failure only. A hook log refused as unsafe (a symlink, a
	// directory others may write) is said at every stage: the fence goes
	// on, unlogged.
	log, closeLog, logErr := hook.OpenLog(logPath, g.debug, io.Discard)
	defer closeLog()
	if logErr != nil {
		fmt.Fprintf(stderr, "%s %s: %v; logging nowhere (the fence is not affected)\n", bin, which, logErr)
	}

	stage, st, entry, err := readState(g, cfg, which, stdin, log)
	if err == nil {
		err = cfgErr
	}
	var res hook.Result
	if err == nil {
		h := hook.New(cfg, entry)
		h.Device = g.device
		h.Deadline = start.Add(hook.StageBudget)
		res, err = h.Run(stage, st)
	}

	code := hook.ExitCode(err, failure)
	e := entry.WithFields(resultFields(res, code, start))
	switch {
	case err == nil:
		e.Info("done")
	case code == 0:
		e.WithError(err).Warn("could not fence; failure: open lets the container start unfenced")
		fmt.Fprintf(stderr, "%s %s: warning: container starts UNFENCED (failure: open): %v\n", bin, stage, err)
	default:
		e.WithError(err).Error("failed")
		id := ""
		if st != nil {
			id = " " + st.ID
		}
		fmt.Fprintf(stderr, "%s %s%s: %v\n", bin, stage, id, err)
	}
	return code
}

// readState reads the OCI state from stdin and the stage it calls for, and
// gives the log entry that names them. The stage is known from the state
// even when the config is broken, so that the log line of a config error
// names the stage it failed.
func readState(g *flags, cfg *config.Config, which string, stdin io.Reader, log *logrus.Logger) (oci.Stage, *specs.State, *logrus.Entry, error) {
	stage := oci.Stage(which)
	st, err := oci.ReadState(stdin)
	entry := log.WithField("stage", which)
	if g.device != "" {
		entry = entry.WithField("cdi_device", g.device)
	}
	if err == nil {
		entry = entry.WithField("container", st.ID)
		if which == "hook" {
			stage, err = oci.StageFor(st)
		}
		entry = entry.WithField("stage", string(stage))
		entry.WithFields(logrus.Fields{"state": st, "config": cfgPath(cfg, g.config)}).Debug("OCI state read")
	}
	return stage, st, entry, err
}

// resultFields are the log line's account of the run: how long it took,
// its exit code, and what the hook did, leaving out what it did not get to.
func resultFields(res hook.Result, code int, start time.Time) logrus.Fields {
	fields := logrus.Fields{
		"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
		"exit":        code,
	}
	for k, v := range map[string]string{"netns": res.Netns, "mode": res.Mode, "backend": res.Backend, "action": res.Action} {
		if v != "" {
			fields[k] = v
		}
	}
	if res.Rules > 0 {
		fields["rules"] = res.Rules
	}
	return fields
}

// cfgPath names the config for the log: the file read, or what was asked.
func cfgPath(cfg *config.Config, flagValue string) string {
	if cfg != nil && cfg.Path != "" {
		return cfg.Path
	}
	if cfg != nil {
		return "built-in defaults"
	}
	return config.Locate(flagValue).Path
}
