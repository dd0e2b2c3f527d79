package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/bypass-hook/bypass-hook/monitor"
)

// DefaultMetricsAddr is loopback: the events name containers, which not
// everyone on the network needs to see. A DaemonSet passes :9723.
const DefaultMetricsAddr = "127.0.0.1:9723"

func runMonitor(g *globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := subFlags("monitor", g, stderr)
	addr := fs.String("metrics-addr", DefaultMetricsAddr, `serve Prometheus metrics at http://ADDR/metrics ("" for none)`)
	resync := fs.Duration("resync", monitor.DefaultResync, "read the whole state directory again this often (inotify does the rest)")
	forget := fs.Duration("forget-after", monitor.DefaultForget, "keep a removed container's series and log prefix this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bypass-hook monitor: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	// The monitor's own messages go to stderr as JSON lines; stdout has
	// only events.
	log := logging.New(stderr, logging.JSON, g.debug)
	cfg, err := config.Load(g.config)
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook monitor: %v\n", err)
		return 2
	}
	m, err := monitor.New(monitor.Options{Config: cfg, Out: stdout, Log: log, Resync: *resync, Forget: *forget})
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook monitor: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fields := logrus.Fields{"stateDir": cfg.StateDir, "target": cfg.Log.Target, "config": cfg.Path}
	serveErr := make(chan error, 1)
	if *addr != "" {
		bound, err := monitor.ServeMetrics(ctx, *addr, m.Registry(), serveErr)
		if err != nil {
			fmt.Fprintf(stderr, "bypass-hook monitor: %v\n", err)
			return 1
		}
		fields["metrics"] = bound.String()
	}
	runErr := make(chan error, 1)
	go func() {
		runErr <- m.Run(ctx, func() { log.WithFields(fields).Info("monitor started") })
	}()
	select {
	case err = <-runErr:
	case err = <-serveErr:
		stop()
		<-runErr
	}
	if err != nil {
		log.WithError(err).Error("monitor failed")
		fmt.Fprintf(stderr, "bypass-hook monitor: %v\n", err)
		return 1
	}
	log.Info("monitor stopped")
	return 0
}
