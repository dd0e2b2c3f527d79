// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/nri/pkg/api"

	"github.com/bypass-hook/bypass-hook/internal/cli"
	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

// nriSocketEnv is set by the runtime for a plugin it starts itself.
const nriSocketEnv = api.PluginSocketEnvVar

func nriCommand(g *globals) *cli.Command {
	var o nriplugin.Options
	var lf logging.Flags
	return &cli.Command{
		Name:    "nri",
		Summary: "run as a containerd NRI plugin that injects the hook into the containers the config selects",
		Help: `Connects to the runtime's NRI socket and, at every container creation, adds the
createRuntime and poststop hooks to the containers the config selects (pod
annotations passed through); at its synchronization it fences the running ones
that have no fence. Runs until SIGTERM or SIGINT.
Reads: the config (again whenever the file changes), the NRI socket.
Writes: log lines to stderr (JSON by default, as the hook log and the monitor);
a plugin the runtime starts itself (NRI_PLUGIN_SOCKET set, no arguments) logs
to the config's hookLog instead, since the runtime discards its stderr.
Exit: 0 stopped by a signal, 1 the plugin failed, 2 a flag or the config is wrong.

Example:
  bypass-hook nri --config /etc/bypass-hook/config.yaml --log-format text`,
		Flags: func(fs *flag.FlagSet) {
			g.configFlag(fs)
			o.Flags(fs)
			lf.Register(fs)
		},
		Run: func(io cli.IO, args []string) int {
			if !noArgs(io, "nri", args, "") {
				return cli.ExitUsage
			}
			return runNRI(g, o, lf, io)
		},
	}
}

// preRegisteredNRI runs the plugin when containerd starts it from its plugin
// directory (a link to this binary), which it does without arguments.
func preRegisteredNRI(g *globals) func(cli.IO) (int, bool) {
	return func(io cli.IO) (int, bool) {
		if os.Getenv(nriSocketEnv) == "" {
			return 0, false
		}
		var o nriplugin.Options
		var lf logging.Flags
		fs := flag.NewFlagSet("nri", flag.ContinueOnError)
		o.Flags(fs)
		lf.Register(fs)
		_ = fs.Parse(nil) // the defaults
		return runNRI(g, o, lf, io), true
	}
}

func runNRI(g *globals, o nriplugin.Options, lf logging.Flags, io cli.IO) int {
	log, err := lf.New(io.Stderr)
	if err != nil {
		fmt.Fprintf(io.Stderr, "bypass-hook nri: %v\n", err)
		return cli.ExitUsage
	}
	o.Config = g.config
	// The runtime starts a pre-registered plugin with a connected socket.
	o.PreRegistered = os.Getenv(nriSocketEnv) != ""
	o.Log = log

	p, err := nriplugin.New(o)
	if err != nil {
		// A flag, the config or the binary: the operator must fix it.
		fmt.Fprintf(io.Stderr, "bypass-hook nri: %v\n", err)
		return cli.ExitUsage
	}
	defer p.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if o.HealthAddr != "" {
		addr, err := p.ServeHealth(ctx, o.HealthAddr)
		if err != nil {
			fmt.Fprintf(io.Stderr, "bypass-hook nri: %v\n", err)
			return cli.ExitUsage
		}
		log.WithField("addr", addr.String()).Info("NRI: serving /healthz, /readyz and /metrics")
	}
	if err := p.Run(ctx); err != nil {
		log.WithError(err).Error("NRI plugin stopped")
		return 1
	}
	return 0
}
