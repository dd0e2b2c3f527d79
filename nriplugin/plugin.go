// SPDX-License-Identifier: Apache-2.0

// Package nriplugin is the containerd NRI plugin of bypass-hook: on
// CreateContainer it injects the hook's createRuntime and poststop stages
// into the containers the config selects, and carries the pod's
// bypass-hook.io annotations into the container, where the hook reads them.
//
// It runs as an external plugin (it dials the runtime's NRI socket and
// dials again whenever the runtime restarts) or pre-registered (the runtime
// starts it from its plugin directory with a connected socket, and starts
// it again after a restart of its own).
package nriplugin

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v4"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/install"
)

// Defaults of the plugin's identity with the runtime.
const (
	DefaultName  = "bypass-hook"
	DefaultIndex = "10"
)

// Reconnection backoff of an external plugin. While it is not connected,
// containers start without the hook, so it tries again soon, and never
// waits long: a failed connect to a unix socket costs next to nothing.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = 250 * time.Millisecond
)

// Options configure a Plugin. Empty fields take the defaults.
type Options struct {
	SocketPath string // the runtime's NRI socket (external); "" is NRI's default, /var/run/nri/nri.sock
	Name       string // plugin name; a pre-registered plugin is told its own by the runtime
	Index      string // two digits; likewise
	// Binary is the hook the plugin injects, as the node's runtime sees it;
	// "" is the plugin's own executable, or the NRI plugin config's binary.
	Binary string
	// Config is the config file, for the plugin and for the hooks it
	// injects; "" is the NRI plugin config's, else the hook's default.
	Config string
	// PreRegistered: the runtime started the plugin with a connected socket
	// (NRI_PLUGIN_SOCKET). It then cannot reconnect; it exits with the
	// connection, and logs to the config's hookLog, since the runtime
	// discards its output.
	PreRegistered bool
	// HealthAddr is where the command serves /healthz, /readyz and
	// /metrics (ServeHealth); "" for nowhere.
	HealthAddr string
	Log        *logrus.Logger
}

// Flags registers the command-line flags of `bypass-hook nri` that fill o
// (the config comes from the global --config).
func (o *Options) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.SocketPath, "socket-path", api.DefaultSocketPath, "the runtime's NRI socket (external plugin)")
	fs.StringVar(&o.Name, "plugin-name", DefaultName, "name to register with")
	fs.StringVar(&o.Index, "plugin-index", DefaultIndex, "index to register with (two digits; plugins run in index order)")
	fs.StringVar(&o.Binary, "binary", "", "hook binary to inject, as the node's runtime sees it (default: bypass-hook-oci beside this executable, else this executable)")
	fs.StringVar(&o.HealthAddr, "health-addr", "", `serve /healthz, /readyz (200 only while registered and synchronized) and /metrics at ADDR ("" for none)`)
}

// PluginConfig is what the runtime's NRI plugin config directory may hold
// for a pre-registered plugin (containerd: /etc/nri/conf.d/10-bypass-hook.conf),
// since the runtime starts it without arguments. Flags win over it.
type PluginConfig struct {
	Config string `yaml:"config"` // the bypass-hook config file
	Binary string `yaml:"binary"` // the hook binary to inject
}

// Plugin is the NRI plugin.
type Plugin struct {
	opts   Options
	log    *logrus.Logger
	policy *api.FailurePolicy // read by the stub when it answers Configure

	mu     sync.Mutex
	conf   PluginConfig   // from the runtime, at Configure
	cfg    *config.Config // the config in force
	target install.Registration
	stamp  fileStamp // of the config file cfg was read from
	// applied is the stamp of the config last applied to the running
	// fences (applyConfig).
	applied fileStamp
	// reapply is when the config in force is to be applied once more
	// (followConfig), zero for never: a hook that read the file before it
	// changed may write its fence, with the config it read, after the
	// apply went by (it waited for the namespace's lock, or the node is
	// slow); it ends within hook.StageBudget.
	reapply time.Time
	// applying is held by an apply of the config to the running fences:
	// they take turns (see applyConfig).
	applying sync.Mutex
	// applyWaiting: an apply is started and has not read the config yet
	// (it waits its turn); it will read the one in force, so a newer load
	// starts none (startApply). Each apply may wait for a fence's lock up
	// to records.LockTimeout, and an apply per load piled up goroutines
	// while the file kept changing.
	applyWaiting bool
	// broken: the config file could not be loaded and no good one was ever
	// in force. The plugin still runs and gives every container outside the
	// default excluded namespaces the hook, which refuses it with the
	// config's error: a plugin that stopped instead would let them start
	// unfenced (NRI fails open).
	broken  error
	logFile func() // closes the hook log a pre-registered plugin writes to
	// configured: the runtime has configured the plugin once, so the
	// config in force is the one meant (a pre-registered plugin's may come
	// with the NRI plugin config).
	configured bool

	health *health
	late   *late
	// conn counts the connections to the runtime, so that the late fencing
	// of one that has ended does not report the plugin ready.
	conn atomic.Int64
}

// New checks the options and loads the config. A wrong flag or a hook
// binary that is not there stops the plugin before it registers; a broken
// config does not (see Plugin.broken).
func New(opts Options) (*Plugin, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Index == "" {
		opts.Index = DefaultIndex
	}
	if err := api.CheckPluginName(opts.Name); err != nil {
		return nil, err
	}
	if err := api.CheckPluginIndex(opts.Index); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	p := &Plugin{opts: opts, log: opts.Log, policy: &api.FailurePolicy{}, logFile: func() {}, health: newHealth(), late: newLate()}
	p.health.rejected = p.rejectedConfig
	if err := p.load(PluginConfig{}); err != nil {
		return nil, err
	}
	return p, nil
}

// Run connects to the runtime and serves it until ctx ends. An external
// plugin reconnects whenever the connection ends (a runtime restart); a
// pre-registered one returns, and the runtime starts it again.
func (p *Plugin) Run(ctx context.Context) error {
	// The config is followed while Run runs, not after: a pre-registered
	// plugin returns with its connection, ctx still live, and its caller
	// closes the log.
	ctx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { p.followConfig(ctx); close(followed) }()
	defer func() { cancel(); <-followed }()
	delay := minRetry
	for {
		began := time.Now()
		err := p.serve(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case p.opts.PreRegistered && errors.Is(err, ttrpc.ErrServerClosed):
			p.log.Info("NRI: the runtime closed the connection; it starts the plugin again when it restarts")
			return nil
		case p.opts.PreRegistered:
			return err
		}
		if time.Since(began) > 10*time.Second {
			delay = minRetry // it was connected: the runtime restarted
		}
		p.log.WithError(err).Warnf("NRI: not connected to the runtime; containers start WITHOUT the hook until it is; trying again in %s", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetry)
	}
}

// configPoll is how often the plugin looks whether its config file
// changed (one stat) while the runtime asks it nothing.
const configPoll = 2 * time.Second

// followConfig reads the config again whenever the file changes, until ctx
// ends: the runtime's requests read it too, but a node where no container
// starts makes none, and an edit must reach the running fences all the
// same (load applies it). It applies a new config once more when the
// hooks that read the old one have ended (reapply).
func (p *Plugin) followConfig(ctx context.Context) {
	tick := time.NewTicker(configPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.current()
			p.mu.Lock()
			if !p.reapply.IsZero() && now.After(p.reapply) {
				p.reapply = time.Time{}
				p.startApply()
			}
			p.mu.Unlock()
		}
	}
}

// serve runs one connection to the runtime, from registration to its end.
func (p *Plugin) serve(ctx context.Context) error {
	opts := []stub.Option{
		stub.WithLogger(nriLogger{p.log}),
		stub.WithFailurePolicy(p.policy),
	}
	// A pre-registered plugin is told its name and index in its environment,
	// and the stub refuses to have its index set twice.
	if os.Getenv(api.PluginNameEnvVar) == "" {
		opts = append(opts, stub.WithPluginName(p.opts.Name))
	}
	if os.Getenv(api.PluginIdxEnvVar) == "" {
		opts = append(opts, stub.WithPluginIdx(p.opts.Index))
	}
	if p.opts.SocketPath != "" {
		opts = append(opts, stub.WithSocketPath(p.opts.SocketPath))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		return fmt.Errorf("NRI plugin: %w", err)
	}
	p.conn.Add(1)
	err = s.Run(ctx)
	p.conn.Add(1)
	p.health.set(false, "not connected to the runtime: containers start WITHOUT the hook")
	s.Stop()
	return err
}

// generation names the current connection to the runtime.
func (p *Plugin) generation() int64 { return p.conn.Load() }

// Configure is the runtime's first call after registration. It carries the
// NRI plugin config, if the runtime has one for this plugin.
func (p *Plugin) Configure(_ context.Context, conf, runtime, version string) (api.EventMask, error) {
	var pc PluginConfig
	if len(bytes.TrimSpace([]byte(conf))) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(conf)))
		dec.KnownFields(true)
		if err := dec.Decode(&pc); err != nil {
			return 0, fmt.Errorf("NRI plugin config (keys: config, binary): %w", err)
		}
	}
	if err := p.load(pc); err != nil {
		p.mu.Lock()
		same := pc == p.conf // then the config in force came from the same place
		p.mu.Unlock()
		if !same {
			p.log.WithError(err).Error("NRI: cannot configure")
			return 0, err
		}
		p.log.WithError(err).Error("NRI: the config cannot be loaded; the plugin keeps the last good one")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.PreRegistered && !p.configured {
		// Only now is the config known for sure: the NRI plugin config
		// may name another one than the defaults New read.
		p.logTo(p.cfg.HookLog)
	}
	p.configured = true
	p.health.set(false, "registered with the runtime; waiting for its synchronization")
	p.log.WithFields(logrus.Fields{
		"runtime": runtime + " " + version, "binary": p.target.Binary, "config": p.cfg.Path,
		"selection": p.cfg.Selection, "excludeNamespaces": p.cfg.NRI.ExcludeNamespaces,
	}).Info("NRI: connected; injecting the hook into the containers the config selects")
	return api.EventMask(0), nil // every event the plugin handles: CreateContainer
}

// Shutdown is the runtime telling it is going away.
func (p *Plugin) Shutdown(context.Context) {
	p.log.Info("NRI: the runtime is shutting down")
}

// CreateContainer injects the hook into a selected container.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	cfg, target, broken := p.current()
	c := Choose(cfg, pod, ctr, target.Binary)
	if broken != nil {
		c = chooseBroken(cfg, broken, pod, ctr, target.Binary)
	}
	entry := p.log.WithFields(logrus.Fields{
		"pod": pod.GetNamespace() + "/" + pod.GetName(), "container": ctr.GetName(), "id": ctr.GetId(), "reason": c.Reason,
	})
	if !c.Selected {
		entry.Info("NRI: not injecting the hook")
		return nil, nil, nil
	}
	adjust := &api.ContainerAdjustment{}
	for k, v := range c.Annotations {
		adjust.AddAnnotation(k, v)
	}
	var hooks specs.Hooks
	if c.AddCreate {
		hooks.CreateRuntime = []specs.Hook{target.Hook(install.SubCreate)}
	}
	if c.AddPoststop {
		hooks.Poststop = []specs.Hook{target.Hook(install.SubPoststop)}
	}
	if c.AddCreate || c.AddPoststop {
		adjust.AddHooks(api.FromOCIHooks(&hooks))
	}
	entry = entry.WithFields(logrus.Fields{"createRuntime": c.AddCreate, "poststop": c.AddPoststop, "annotations": len(c.Annotations)})
	if c.AddCreate || c.AddPoststop {
		entry.Info("NRI: injecting the hook")
	} else {
		entry.Info("NRI: the hook is registered already")
	}
	return adjust, nil, nil
}

// current returns the config and target in force, reading the config file
// again if it changed since: the hooks read it at every container, and the
// plugin's selection must follow. A file that no longer parses leaves the
// last good config in force (the hooks will refuse it and say why).
func (p *Plugin) current() (*config.Config, install.Registration, error) {
	p.mu.Lock()
	conf, cfg, target, stamp, broken := p.conf, p.cfg, p.target, p.stamp, p.broken
	p.mu.Unlock()
	// The stamp is taken before the file is read again, so a change while
	// it is read shows as a change next time.
	now := stampOf(config.File(cfg))
	if now == stamp {
		return cfg, target, broken
	}
	if err := p.load(conf); err != nil {
		p.log.WithError(err).Error("NRI: the config changed and cannot be loaded; the plugin keeps the last good one")
		p.mu.Lock()
		p.stamp = now // say it once per change
		p.mu.Unlock()
		return cfg, target, broken
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stamp = now
	if p.broken == nil {
		p.log.WithField("config", config.File(p.cfg)).Info("NRI: config reloaded")
	}
	return p.cfg, p.target, p.broken
}

// load reads the config and checks the binary that the flags, else pc,
// name, and puts them in force.
func (p *Plugin) load(pc PluginConfig) error {
	cfgFlag, binary := p.opts.Config, p.opts.Binary
	if cfgFlag == "" {
		cfgFlag = pc.Config
	}
	if binary == "" {
		binary = pc.Binary
	}
	if binary == "" {
		var err error
		if binary, err = install.DefaultBinary(); err != nil {
			return err
		}
	}
	// The plugin's config file must exist, named or not: the hook's
	// defaults with no proxies fence nothing, and a file that is missing
	// (not written yet, or deleted) must fail closed as a broken one does.
	// The hooks it injects are told the file for the same reason.
	// The stamp before the read: a change while the file is read shows as
	// a change next time, and is then applied to the running fences.
	before := stampOf(config.Locate(cfgFlag).Path)
	cfgPath, cfg, err := install.ResolveConfig("", config.Locate(cfgFlag).Path)
	var cfgErr *config.Error
	var broken error
	switch {
	case errors.As(err, &cfgErr) && p.neverLoaded():
		broken = err
		cfg = config.Default()
		cfg.Path, _ = filepath.Abs(config.Locate(cfgFlag).Path)
		cfgPath = cfg.Path
		p.log.WithError(err).Error("NRI: the config cannot be loaded: every container outside " +
			strings.Join(cfg.NRI.ExcludeNamespaces, ", ") + " gets the hook, which refuses it, until the config is fixed")
	case err != nil:
		return err
	}
	target := install.Registration{Binary: binary, Config: cfgPath}
	if err := target.Check(""); err != nil {
		return fmt.Errorf("NRI plugin: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken = broken
	if p.opts.PreRegistered && p.configured {
		p.logTo(cfg.HookLog)
	}
	p.conf, p.cfg, p.target, p.stamp = pc, cfg, target, before
	// A plugin that times out must not let a container start unfenced
	// where the config says fail closed. (Runtimes before NRI 0.12 ignore
	// failure policies.)
	p.policy.FailRequest = cfg.Failure == config.FailClosed
	// Once per version of the file: a start loads it twice (the plugin's
	// own start, then the runtime's Configure), and each apply reads every
	// fence.
	if broken == nil && p.stamp != p.applied {
		p.applied = p.stamp
		p.reapply = time.Now().Add(hook.StageBudget + time.Second)
		p.startApply()
	}
	return nil
}

// neverLoaded tells whether no good config was ever in force.
func (p *Plugin) neverLoaded() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg == nil || p.broken != nil
}

// logTo points the log at the hook log, for a pre-registered plugin whose
// standard error the runtime discards. p.mu must be held.
func (p *Plugin) logTo(path string) {
	if path == "" {
		return
	}
	l, closeFn, err := hook.OpenLog(path, false, os.Stderr)
	if err != nil {
		p.log.WithError(err).Warn("NRI: cannot open the hook log")
		return
	}
	p.log.SetOutput(l.Out)
	p.log.SetFormatter(l.Formatter)
	p.log.ReplaceHooks(logrus.LevelHooks{})
	p.log.AddHook(componentField{}) // tells its lines from the hook's
	p.logFile()                     // the one before, if any
	p.logFile = closeFn
}

// Close closes the log file a pre-registered plugin writes; call it after
// Run and the last log line.
func (p *Plugin) Close() { p.closeLog() }

func (p *Plugin) closeLog() {
	p.mu.Lock()
	closeFn := p.logFile
	p.logFile = func() {}
	p.mu.Unlock()
	closeFn()
}

// fileStamp tells whether a file changed: a rename over it (as editors and
// `install config` do) changes the inode, an edit in place the rest.
type fileStamp struct {
	exists bool
	ino    uint64
	size   int64
	mtime  time.Time
}

func stampOf(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	fs := fileStamp{exists: true, size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fs.ino = sys.Ino
	}
	return fs
}

// componentField marks the plugin's lines in the hook log.
type componentField struct{}

func (componentField) Levels() []logrus.Level { return logrus.AllLevels }
func (componentField) Fire(e *logrus.Entry) error {
	e.Data["component"] = "nri"
	return nil
}

// nriLogger sends the NRI stub's log lines to the plugin's log.
type nriLogger struct{ l *logrus.Logger }

func (n nriLogger) Debugf(_ context.Context, f string, a ...any) { n.l.Debugf("NRI: "+f, a...) }
func (n nriLogger) Infof(_ context.Context, f string, a ...any)  { n.l.Infof("NRI: "+f, a...) }
func (n nriLogger) Warnf(_ context.Context, f string, a ...any)  { n.l.Warnf("NRI: "+f, a...) }
func (n nriLogger) Errorf(_ context.Context, f string, a ...any) { n.l.Errorf("NRI: "+f, a...) }
