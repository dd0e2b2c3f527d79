// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/cli"
	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/bypass-hook/bypass-hook/monitor"
)

// DefaultMetricsAddr is loopback: the events name containers, which not
// everyone on the network needs to see. A DaemonSet passes :9723.
const DefaultMetricsAddr = "127.0.0.1:9723"

func monitorCommand(g *globals) *cli.Command {
	var addr string
	var o monitor.Options
	var lf logging.Flags
	var pf pruneFlags
	return &cli.Command{
		Name:    "monitor",
		Summary: "print bypass attempts as JSON lines on stdout, serve Prometheus metrics",
		Help: `Watches the fences recorded in the config's stateDir and reads what their log
rules write (the kernel log for log.target kernel, NFLOG for nflog). Runs until
SIGTERM or SIGINT.
Reads: the config, the state directory, /dev/kmsg or NFLOG in each fenced namespace,
and what its eBPF programs note of the process behind each attempt (--attribution).
Writes: one JSON event per attempt on stdout; its own log lines on stderr (JSON
by default, the same fields in text); metrics at http://ADDR/metrics, each
fence's last attempts as JSON at http://ADDR/attempts (what status shows).
At every resync it also prunes, as 'bypass-hook prune' does: a fence whose
owners' processes have all been gone for --prune-grace is taken out (not where
the state directory is read-only, as in the shipped DaemonSet); what hooks
killed mid-way left it tidies once a minute.
Exit: 0 stopped by a signal, 1 failed, 2 a flag or the config is wrong.

Example:
  bypass-hook monitor --metrics-addr :9723 | jq 'select(.action == "refused")'`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			fs.StringVar(&addr, "metrics-addr", DefaultMetricsAddr, `serve Prometheus metrics at http://ADDR/metrics ("" for none)`)
			fs.DurationVar(&o.Resync, "resync", monitor.DefaultResync, "read the whole state directory again this often (inotify does the rest)")
			fs.DurationVar(&o.Forget, "forget-after", monitor.DefaultForget, "keep a removed container's series and log prefix this long")
			fs.BoolVar(&o.Repair, "repair", false, "put a fence that is not whole back at once (without it, each resync reports it: an event and bypass_hook_fences_not_whole)")
			fs.BoolVar(&o.Attribution, "attribution", true, "name the process of each attempt (pid, command, executable), noted in the kernel by eBPF programs; without BTF or the privilege to load them, the monitor says so once and events carry the rest")
			fs.BoolVar(&pf.on, "prune", true, "at every resync, take out fences whose every owner's process is gone (as 'bypass-hook prune' does)")
			fs.DurationVar(&pf.grace, "prune-grace", hook.DefaultPruneGrace, "how long a fence's owners must have been seen stale before it is pruned")
			lf.Register(fs)
		},
		Run: func(io cli.IO, args []string) int {
			if !noArgs(io, "monitor", args, "") {
				return cli.ExitUsage
			}
			return runMonitor(g, addr, o, lf, pf, io)
		},
	}
}

// pruneFlags say whether and when the monitor prunes stale fences.
type pruneFlags struct {
	on    bool
	grace time.Duration
}

func runMonitor(g *globals, addr string, o monitor.Options, lf logging.Flags, pf pruneFlags, io cli.IO) int {
	log, err := lf.New(io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "bypass-hook monitor: %v\n", err)
		return cli.ExitUsage
	}
	cfg, err := config.Load(g.config)
	if err != nil {
		fmt.Fprintf(io.Stderr, "bypass-hook monitor: %v\n", err)
		return cli.ExitUsage
	}
	o.Config, o.Out, o.Log = cfg, io.Stdout, log
	// One store for the monitor and its prune: each record parsed once.
	if o.Store, err = records.Open(cfg.StateDir); err != nil {
		fmt.Fprintf(io.Stderr, "bypass-hook monitor: %v\n", err)
		return 1
	}
	o.Store.KeepPidfds = true // it prunes at every resync, all along
	o.Prune = pruner(cfg, log, pf, o.Store)
	m, err := monitor.New(o)
	if err != nil {
		fmt.Fprintf(io.Stderr, "bypass-hook monitor: %v\n", err)
		return 1
	}
	return serveUntilSignal(m, cfg, addr, log, io)
}

// sweepEvery is how often the monitor's prune tidies the state directory.
const sweepEvery = time.Minute

// pruner is the monitor's prune at each resync, nil where it does not
// prune; it reads the records through store, the monitor's.
func pruner(cfg *config.Config, log *logrus.Logger, pf pruneFlags, store *records.Store) func(time.Time) {
	if pf.on && unix.Access(cfg.StateDir, unix.W_OK) != nil {
		// The shipped DaemonSet mounts the node's state directory
		// read-only: there the monitor watches and does not prune.
		log.WithField("stateDir", cfg.StateDir).Warn("the state directory is not writable here: fences left only to stale owners are not pruned (run 'bypass-hook prune' on the node)")
		pf.on = false
	}
	if !pf.on {
		return nil
	}
	h := hook.New(cfg, log.WithField("stage", "prune"))
	h.UseStore(store)
	var swept time.Time
	var said string // the last error said: a refusal (a namespace of its own) is said once
	return func(now time.Time) {
		// Tidying what hooks killed mid-way left reads the whole state
		// directory: once a minute, not at every resync.
		prune := h.ReapAbandonedFences
		if now.Sub(swept) >= sweepEvery || now.Before(swept) {
			prune, swept = h.RemoveAbandonedFences, now
		}
		_, _, _, err := prune(pf.grace, now)
		switch {
		case err == nil:
			said = ""
		case err.Error() != said:
			said = err.Error()
			log.WithError(err).Error("pruning fences left only to stale owners")
		}
	}
}

// serveUntilSignal runs the monitor and its metrics server (none for addr
// "") until SIGINT or SIGTERM, or until either fails: then the other
// stops too.
func serveUntilSignal(m *monitor.Monitor, cfg *config.Config, addr string, log *logrus.Logger, io cli.IO) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fields := logrus.Fields{"stateDir": cfg.StateDir, "target": cfg.Log.Target, "config": cfg.Path}
	serveErr := make(chan error, 1)
	if addr != "" {
		bound, err := monitor.ServeMetrics(ctx, addr, m.Registry(), serveErr, monitor.Route{Path: monitor.AttemptsPath, Handler: m.AttemptsHandler()})
		if err != nil {
			hint := ""
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = ` (another process serves there: name another with --metrics-addr ADDR, or none with --metrics-addr "")`
			}
			fmt.Fprintf(io.Stderr, "bypass-hook monitor: %v%s\n", err, hint)
			return 1
		}
		fields["metrics"] = bound.String()
	}
	runErr := make(chan error, 1)
	go func() {
		runErr <- m.Run(ctx, func() { log.WithFields(fields).Info("monitor started") })
	}()
	var err error
	select {
	case err = <-runErr:
	case err = <-serveErr:
		stop()
		<-runErr
	}
	if err != nil {
		log.WithError(err).Error("monitor failed")
		fmt.Fprintf(io.Stderr, "bypass-hook monitor: %v\n", err)
		return 1
	}
	log.Info("monitor stopped")
	return 0
}
