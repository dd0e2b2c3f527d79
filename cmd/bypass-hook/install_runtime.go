// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/cli"
)

// runtimeFlags are the flags of docker-runtime and containerd-runtime.
type runtimeFlags struct {
	g           *globals
	binary      string
	runtime     string
	remove      bool
	makeDefault bool
	file        string // daemon.json or containerd's config.toml
	selection   string // the config's, once read
}

func (f *runtimeFlags) common(fs *flag.FlagSet, what string) {
	f.g.configFlag(fs)
	fs.StringVar(&f.binary, "binary", "", "the runtime wrapper the engine runs (default: bypass-hook-runtime beside this executable)")
	fs.BoolVar(&f.remove, "remove", false, "remove the "+what+" instead of writing it")
}

const runtimeHelp = `
--binary defaults to bypass-hook-runtime beside this executable; the wrapper runs
bypass-hook-oci from its own directory. --config (else $BYPASS_HOOK_CONFIG, else
/etc/bypass-hook/config.yaml) is checked before anything is written. The
container opts in as by annotation, or by the environment variable
` + config.EnvEnabled + `=true (` + config.EnvMode + `, ` + config.EnvProxies + ` likewise), where
the engine gives no annotations.`

func dockerRuntimeCommand(g *globals) *cli.Command {
	f := &runtimeFlags{g: g}
	return &cli.Command{
		Name:    "docker-runtime",
		Summary: "add the runtime wrapper bypass-hook to Docker's daemon.json (any Docker; 20.10-24 have no CDI)",
		Help: `Adds runtimes.` + install.RuntimeName + ` (bypass-hook-runtime, which adds the hooks to a selected
container's config.json and runs runc) to daemon.json; every other key is kept,
the file as it was is kept as daemon.json.bypass-hook.bak. --default also makes
it default-runtime, so that every container goes through it. Docker reads the
change when it is reloaded (systemctl reload docker, or SIGHUP to dockerd);
running containers are not touched. With --remove, takes both out again.` + runtimeHelp + `

Examples:
  sudo bypass-hook install docker-runtime && sudo systemctl reload docker
  docker run --runtime ` + install.RuntimeName + ` -e ` + config.EnvEnabled + `=true IMAGE
  sudo bypass-hook install docker-runtime --remove`,
		Flags: func(fs *flag.FlagSet) {
			f.common(fs, "runtime")
			fs.BoolVar(&f.makeDefault, "default", false, "make it Docker's default runtime (every container, not only --runtime "+install.RuntimeName+")")
			fs.StringVar(&f.runtime, "runtime", "", "the real runtime the wrapper runs: runc (default), crun, or an absolute path")
			fs.StringVar(&f.file, "daemon-json", install.DaemonJSON, "Docker's config file")
		},
		Run: withoutArgs("docker-runtime", f.docker),
	}
}

func containerdRuntimeCommand(g *globals) *cli.Command {
	f := &runtimeFlags{g: g}
	return &cli.Command{
		Name:    "containerd-runtime",
		Summary: "add the runtime wrapper bypass-hook to containerd 1.6/1.7's CRI config (Kubernetes without NRI)",
		Help: `Adds the CRI runtime ` + install.RuntimeName + ` (runtime_type io.containerd.runc.v2, BinaryName
bypass-hook-runtime, pod_annotations letting bypass-hook.io/* into config.json)
to containerd's config.toml, as a block of its own: the rest of the file, its
comments included, stays as it was; the file as it was is kept as
config.toml.bypass-hook.bak. Pods select it with a RuntimeClass whose handler is
` + install.RuntimeName + `, or every pod with default_runtime_name = "` + install.RuntimeName + `" in the CRI
plugin's containerd table. containerd reads the change when it is restarted
(systemctl restart containerd; running containers keep running). containerd 2.x
(config version 3) has NRI: use the NRI plugin there. With --remove, takes the
block out again.

containerd gives a runtime no arguments: a --config other than the default, and
--runtime, reach the wrapper through containerd's environment
(BYPASS_HOOK_CONFIG, BYPASS_HOOK_RUNTIME), which the command says how to set.` + runtimeHelp + `

Examples:
  sudo bypass-hook install containerd-runtime && sudo systemctl restart containerd
  sudo bypass-hook install containerd-runtime --remove`,
		Flags: func(fs *flag.FlagSet) {
			f.common(fs, "runtime")
			fs.StringVar(&f.runtime, "runtime", "", "the real runtime the wrapper runs: runc (default), crun, or an absolute path")
			fs.StringVar(&f.file, "containerd-config", install.ContainerdConfig, "containerd's config file")
		},
		Run: withoutArgs("containerd-runtime", f.containerd),
	}
}

func withoutArgs(name string, run func(cli.IO) int) func(cli.IO, []string) int {
	return func(o cli.IO, args []string) int {
		if !noArgs(o, "install "+name, args, "") {
			return cli.ExitUsage
		}
		return run(o)
	}
}

// registration is the wrapper as the engine will run it, checked: the
// config as the hook would load it, the wrapper and the hook beside it.
func (f *runtimeFlags) registration() (install.RuntimeRegistration, error) {
	cfgPath, cfg, err := install.ResolveConfig("", f.g.config)
	if err != nil {
		return install.RuntimeRegistration{}, err
	}
	f.selection = cfg.Selection
	r := install.RuntimeRegistration{Binary: f.binary, Config: cfgPath, Runtime: f.runtime}
	if r.Binary == "" {
		if r.Binary, err = install.DefaultRuntimeBinary(); err != nil {
			return r, err
		}
	}
	if err := r.Check(); err != nil {
		return r, err
	}
	hook := filepath.Join(filepath.Dir(r.Binary), install.HookBinaryName)
	if st, err := os.Stat(hook); err != nil || st.Mode().Perm()&0o111 == 0 {
		return r, fmt.Errorf("%s has no %s beside it, which it gives the containers as their hook: install both in one directory", r.Binary, install.HookBinaryName)
	}
	if f.runtime != "" && !filepath.IsAbs(f.runtime) && filepath.Base(f.runtime) != f.runtime {
		return r, fmt.Errorf("--runtime %q: give a name (runc, crun) or an absolute path", f.runtime)
	}
	return r, nil
}

func (f *runtimeFlags) docker(o cli.IO) int {
	if f.remove {
		res, err := install.RemoveDockerRuntime(f.file)
		if err != nil {
			return fail(o, "docker-runtime", err)
		}
		if !res.Changed {
			fmt.Fprintf(o.Stdout, "nothing to remove: %s has no runtime %s\n", f.file, install.RuntimeName)
			return 0
		}
		fmt.Fprintf(o.Stdout, "removed the runtime %s from %s (as it was: %s)\nreload Docker to apply: sudo systemctl reload docker (or kill -HUP the dockerd process); containers made with --runtime %s can no longer start\n", install.RuntimeName, f.file, res.Backup, install.RuntimeName)
		return 0
	}
	r, err := f.registration()
	if err != nil {
		return fail(o, "docker-runtime", err)
	}
	res, err := install.WriteDockerRuntime(f.file, r, f.makeDefault)
	if err != nil {
		return fail(o, "docker-runtime", err)
	}
	if !res.Changed {
		fmt.Fprintf(o.Stdout, "unchanged: %s already has the runtime %s as asked\n", f.file, install.RuntimeName)
	} else {
		backup := ""
		if res.Backup != "" {
			backup = " (as it was: " + res.Backup + ")"
		}
		fmt.Fprintf(o.Stdout, "wrote the runtime %s (%s) into %s%s\n", install.RuntimeName, r.Binary, f.file, backup)
	}
	if res.ReplacedDefault != "" {
		fmt.Fprintf(o.Stderr, "bypass-hook install docker-runtime: WARNING: the default runtime was %s, and is now %s: containers that relied on %s as the default now need --runtime %s; to keep both, leave out --default, or chain them: --runtime with %s's binary makes the wrapper run it instead of runc\n",
			res.ReplacedDefault, install.RuntimeName, res.ReplacedDefault, res.ReplacedDefault, res.ReplacedDefault)
	}
	fmt.Fprintf(o.Stdout, "reload Docker to apply: sudo systemctl reload docker (or kill -HUP the dockerd process)\n")
	if f.makeDefault || install.DockerDefaultRuntime(f.file) {
		fmt.Fprintf(o.Stdout, "it is the default runtime: every new container goes through it\n")
	} else {
		fmt.Fprintf(o.Stdout, "a container goes through it with: docker run --runtime %s ... (or --default for every container)\n", install.RuntimeName)
	}
	if f.selection == config.SelectAnnotated {
		fmt.Fprintf(o.Stdout, "the config has selection: annotated: a container opts in with -e %s=true\n", config.EnvEnabled)
	} else {
		fmt.Fprintf(o.Stdout, "the config has selection: %s: every container run through it is fenced\n", f.selection)
	}
	return 0
}

func (f *runtimeFlags) containerd(o cli.IO) int {
	if f.remove {
		res, err := install.RemoveContainerdRuntime(f.file)
		if err != nil {
			return fail(o, "containerd-runtime", err)
		}
		if !res.Changed {
			fmt.Fprintf(o.Stdout, "nothing to remove: %s has no block of bypass-hook's\n", f.file)
			return 0
		}
		fmt.Fprintf(o.Stdout, "removed the runtime %s from %s (as it was: %s)\nrestart containerd to apply: sudo systemctl restart containerd; pods of a RuntimeClass with handler %s can no longer start\n", install.RuntimeName, f.file, res.Backup, install.RuntimeName)
		return 0
	}
	r, err := f.registration()
	if err != nil {
		return fail(o, "containerd-runtime", err)
	}
	res, err := install.WriteContainerdRuntime(f.file, r)
	if err != nil {
		return fail(o, "containerd-runtime", err)
	}
	if !res.Changed {
		fmt.Fprintf(o.Stdout, "unchanged: %s already has [%s]\n", f.file, res.Table)
	} else {
		backup := ""
		if res.Backup != "" {
			backup = " (as it was: " + res.Backup + ")"
		}
		fmt.Fprintf(o.Stdout, "wrote [%s] (%s) into %s%s\n", res.Table, r.Binary, f.file, backup)
	}
	if res.CRIDisabled {
		fmt.Fprintf(o.Stderr, "bypass-hook install containerd-runtime: WARNING: %s disables the CRI plugin (disabled_plugins), the only reader of this entry: enable it, or use docker-runtime for Docker's containerd\n", f.file)
	}
	fmt.Fprintf(o.Stdout, "restart containerd to apply: sudo systemctl restart containerd\n")
	fmt.Fprintf(o.Stdout, "select it per pod with a RuntimeClass:\n  apiVersion: node.k8s.io/v1\n  kind: RuntimeClass\n  metadata: {name: %s}\n  handler: %s\nand runtimeClassName: %s in the pod; or for every pod: default_runtime_name = %q in [%s]\n",
		install.RuntimeName, install.RuntimeName, install.RuntimeName, install.RuntimeName, res.Table[:len(res.Table)-len(".runtimes."+install.RuntimeName)])
	var env []string
	if r.Config != "" {
		env = append(env, "BYPASS_HOOK_CONFIG="+r.Config)
	}
	if r.Runtime != "" {
		env = append(env, "BYPASS_HOOK_RUNTIME="+r.Runtime)
	}
	if len(env) > 0 {
		fmt.Fprintf(o.Stdout, "containerd gives a runtime no arguments: set in containerd's environment (sudo systemctl edit containerd):\n  [Service]\n")
		for _, e := range env {
			fmt.Fprintf(o.Stdout, "  Environment=%s\n", e)
		}
	}
	return 0
}
