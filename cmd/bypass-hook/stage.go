package main

import (
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"

	"github.com/bypass-hook/bypass-hook/hook/oci"
)

// runStage runs create, poststop, or (for "hook") the stage the state's
// status calls for. It writes nothing to stdout: a runtime may not read it.
func runStage(which string) func(*globals, []string, io.Reader, io.Writer, io.Writer) int {
	return func(g *globals, args []string, stdin io.Reader, _, stderr io.Writer) int {
		fs := subFlags(which, g, stderr)
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "bypass-hook %s: unexpected argument %q: the OCI state comes on stdin\n", which, fs.Arg(0))
			return 2
		}
		start := time.Now()

		cfg, cfgErr := config.Load(g.config)
		logPath := config.Default().HookLog
		failure := config.FailClosed
		if cfgErr == nil {
			logPath, failure = cfg.HookLog, cfg.Failure
		}
		// Without a hook log the detail goes nowhere: standard error gets one
		// line, on failure only.
		log, closeLog, logErr := hook.OpenLog(logPath, g.debug, io.Discard)
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
			fmt.Fprintf(stderr, "bypass-hook %s: warning: container starts UNFENCED (failure: open): %v\n", stage, err)
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
			fmt.Fprintf(stderr, "bypass-hook %s%s: %v%s\n", stage, id, err, note)
		}
		return code
	}
}
