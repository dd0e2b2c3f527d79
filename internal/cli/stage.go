package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/oci"
)

// StageCommands are the hook's own subcommands, which runtimes call.
func (p *Program) StageCommands() []Command {
	return []Command{
		{"create", "createRuntime (or prestart) stage: fence the container; OCI state on stdin", p.stage("create")},
		{"poststop", "poststop stage: remove the container's fence; OCI state on stdin", p.stage("poststop")},
		{"hook", "either stage, chosen from the state's status", p.stage("hook")},
	}
}

// stage runs create, poststop, or (for "hook") the stage the state's
// status calls for. It writes nothing to stdout: a runtime may not read it.
func (p *Program) stage(which string) func(*Globals, []string, io.Reader, io.Writer, io.Writer) int {
	return func(g *Globals, args []string, stdin io.Reader, _, stderr io.Writer) int {
		fs := p.SubFlags(which, g, stderr)
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "%s %s: unexpected argument %q: the OCI state comes on stdin\n", p.Name, which, fs.Arg(0))
			return 2
		}
		// The hook log's times are UTC: runtimes give hooks no TZ, and
		// reading the zone file for local time would cost every hook run.
		time.Local = time.UTC
		start := time.Now()

		cfg, cfgErr := config.Load(g.Config)
		logPath := config.Default().HookLog
		failure := config.FailClosed
		if cfgErr == nil {
			logPath, failure = cfg.HookLog, cfg.Failure
		}
		// Without a hook log the detail goes nowhere: standard error gets one
		// line, on failure only.
		log, closeLog, logErr := hook.OpenLog(logPath, g.Debug, io.Discard)
		defer closeLog()

		entry := log.WithField("stage", which)
		st, err := oci.ReadState(stdin)
		if err == nil {
			entry = entry.WithField("container", st.ID)
			err = cfgErr
		}
		stage := oci.Stage(which)
		if err == nil && which == "hook" {
			stage, err = oci.StageFor(st)
		}
		var res hook.Result
		if err == nil {
			entry = entry.WithField("stage", string(stage))
			res, err = hook.New(cfg, entry).Run(stage, st)
		}

		code := hook.ExitCode(err, failure)
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
		e := entry.WithFields(fields)
		switch {
		case err == nil:
			e.Info("done")
		case code == 0:
			e.WithError(err).Warn("could not fence; failure: open lets the container start unfenced")
			fmt.Fprintf(stderr, "%s %s: warning: container starts UNFENCED (failure: open): %v\n", p.Name, stage, err)
		default:
			e.WithError(err).Error("failed")
			id := ""
			if st != nil {
				id = " " + st.ID
			}
			note := ""
			if logErr != nil {
				note = fmt.Sprintf(" (and no detail in the hook log: %v)", logErr)
			}
			fmt.Fprintf(stderr, "%s %s%s: %v%s\n", p.Name, stage, id, err, note)
		}
		return code
	}
}
