package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/nri/pkg/api"

	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

// nriSocketEnv is set by the runtime for a plugin it starts itself.
const nriSocketEnv = api.PluginSocketEnvVar

func runNRI(g *globals, args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := subFlags("nri", g, stderr)
	var o nriplugin.Options
	o.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bypass-hook nri: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.Config = g.config
	// The runtime starts a pre-registered plugin with a connected socket.
	o.PreRegistered = os.Getenv(nriSocketEnv) != ""

	log := logging.New(stderr, logging.Text, g.debug)
	o.Log = log

	p, err := nriplugin.New(o)
	if err != nil {
		// A flag, the config or the binary: the operator must fix it.
		fmt.Fprintf(stderr, "bypass-hook nri: %v\n", err)
		return 2
	}
	defer p.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if o.HealthAddr != "" {
		addr, err := p.ServeHealth(ctx, o.HealthAddr)
		if err != nil {
			fmt.Fprintf(stderr, "bypass-hook nri: %v\n", err)
			return 2
		}
		log.WithField("addr", addr.String()).Info("NRI: serving /healthz, /readyz and /metrics")
	}
	if err := p.Run(ctx); err != nil {
		log.WithError(err).Error("NRI plugin stopped")
		return 1
	}
	return 0
}
