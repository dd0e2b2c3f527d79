// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/coreos/go-systemd/v22/unit"
	"go.yaml.in/yaml/v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/manifest"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/nriplugin"
)

// These check that the files in install/ parse as what they are and carry
// the paths the plugin and the hook expect.

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	// It must fence nothing until the operator names the proxies: a
	// `make install` must not cut every container off.
	if len(cfg.Proxies) != 0 {
		t.Errorf("the example config names proxies %v", cfg.Proxies)
	}
	// What it writes out are the defaults, so that it documents them.
	cfg.Path = ""
	def := config.Default()
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", cfg) != fmt.Sprintf("%+v", def) {
		t.Errorf("the example config differs from the defaults:\n%+v\n%+v", cfg, def)
	}
	// And it shows every key an operator may set (`config default` prints it).
	for _, typ := range []reflect.Type{reflect.TypeFor[config.Config](), reflect.TypeFor[config.Allow](), reflect.TypeFor[config.Log](), reflect.TypeFor[config.NRI]()} {
		for f := range typ.Fields() {
			key := f.Tag.Get("yaml")
			if key == "" || key == "-" {
				continue
			}
			if !regexp.MustCompile(`(?m)^[#\s-]*` + key + `:`).Match(data) {
				t.Errorf("the example config does not show the key %s (%s.%s)", key, typ.Name(), f.Name)
			}
		}
	}
}

func TestSysctlFile(t *testing.T) {
	data, err := os.ReadFile("sysctl.d/90-bypass-hook.conf")
	if err != nil {
		t.Fatal(err)
	}
	var settings []string
	for _, line := range strings.Split(string(data), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			settings = append(settings, strings.Join(strings.Fields(l), " "))
		}
	}
	if !slices.Equal(settings, []string{"net.netfilter.nf_log_all_netns = 1"}) {
		t.Errorf("settings %q", settings)
	}
}

// The containerd snippet's NRI paths are the NRI defaults, which the
// plugin, the unit and the DaemonSet use; its commented validator requires
// the plugin by the name it registers with.
func TestContainerdSnippet(t *testing.T) {
	data, err := os.ReadFile("containerd/nri.toml")
	if err != nil {
		t.Fatal(err)
	}
	// Uncommenting the validator must give valid TOML as well.
	uncommented := regexp.MustCompile(`(?m)^  #(\[|  )`).ReplaceAll(data, []byte("  $1"))
	for name, text := range map[string][]byte{"as shipped": data, "validator uncommented": uncommented} {
		var c struct {
			Version int `toml:"version"`
			Plugins map[string]struct {
				Disable          bool   `toml:"disable"`
				SocketPath       string `toml:"socket_path"`
				PluginPath       string `toml:"plugin_path"`
				PluginConfigPath string `toml:"plugin_config_path"`
				RegTimeout       string `toml:"plugin_registration_timeout"`
				ReqTimeout       string `toml:"plugin_request_timeout"`
				Validator        *struct {
					Enable          bool     `toml:"enable"`
					RequiredPlugins []string `toml:"required_plugins"`
				} `toml:"default_validator"`
			} `toml:"plugins"`
		}
		md, err := toml.Decode(string(text), &c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			t.Errorf("%s: keys this test does not know: %v", name, und)
		}
		n, ok := c.Plugins["io.containerd.nri.v1.nri"]
		switch {
		case c.Version != 3 || !ok || n.Disable:
			t.Errorf("%s: version %d, NRI table %v, disable %v", name, c.Version, ok, n.Disable)
		case n.SocketPath != api.DefaultSocketPath || n.PluginPath != adaptation.DefaultPluginPath || n.PluginConfigPath != adaptation.DefaultPluginConfigPath:
			t.Errorf("%s: paths %q %q %q are not NRI's defaults", name, n.SocketPath, n.PluginPath, n.PluginConfigPath)
		}
		if name == "validator uncommented" {
			if n.Validator == nil || !n.Validator.Enable || !slices.Equal(n.Validator.RequiredPlugins, []string{nriplugin.DefaultName}) {
				t.Errorf("validator %+v does not require %q", n.Validator, nriplugin.DefaultName)
			}
		} else if n.Validator != nil {
			t.Errorf("the validator is on as shipped: %+v", n.Validator)
		}
	}
}

func TestNRIPluginConfigExample(t *testing.T) {
	data, err := os.ReadFile("nri/10-bypass-hook.conf")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var pc nriplugin.PluginConfig
	if err := dec.Decode(&pc); err != nil {
		t.Fatal(err)
	}
	if pc.Config != config.DefaultPath || pc.Binary != "/usr/local/bin/bypass-hook-oci" {
		t.Errorf("%+v", pc)
	}
}

// nriArgs parses the arguments of `bypass-hook nri` as the binary does.
func nriArgs(t *testing.T, args []string) (nriplugin.Options, string) {
	t.Helper()
	if len(args) == 0 || args[0] != "nri" {
		t.Fatalf("not an nri command line: %q", args)
	}
	fs := flag.NewFlagSet("nri", flag.ContinueOnError)
	var o nriplugin.Options
	o.Flags(fs)
	cfg := fs.String("config", "", "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		t.Fatalf("nri arguments %q: %v, left %q", args, err, fs.Args())
	}
	return o, *cfg
}

// The units run the binary where `make install` puts it (the packages
// rewrite the path to /usr/bin), with arguments the commands accept.
func TestSystemdUnits(t *testing.T) {
	for _, name := range []string{"bypass-hook-nri.service", "bypass-hook-monitor.service"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("systemd", name)
			execStart := unitExecStart(t, path)
			argv := strings.Fields(execStart)
			if argv[0] != "/usr/local/bin/bypass-hook" {
				t.Errorf("ExecStart runs %s, not where `make install` puts the binary", argv[0])
			}
			switch argv[1] {
			case "nri":
				// The plugin calls sd_notify READY=1 once registered: the
				// unit counts as started only then.
				if typ := unitOption(t, path, "Type"); typ != "notify" {
					t.Errorf("Type=%s, want notify", typ)
				}
				o, _ := nriArgs(t, argv[1:])
				if o.SocketPath != api.DefaultSocketPath {
					t.Errorf("socket %q", o.SocketPath)
				}
			case "monitor":
				fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
				addr := fs.String("metrics-addr", "", "")
				if err := fs.Parse(argv[2:]); err != nil || fs.NArg() > 0 || !strings.HasPrefix(*addr, "127.0.0.1:") {
					t.Errorf("monitor arguments %q: %v; want --metrics-addr on loopback", argv[2:], err)
				}
			default:
				t.Errorf("ExecStart runs %q", argv[1])
			}
			verifyUnit(t, path, execStart)
		})
	}
}

// unitOption is the value of a [Service] option of the unit at path.
func unitOption(t *testing.T, path, name string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		if o.Section == "Service" && o.Name == name {
			return o.Value
		}
	}
	return ""
}

func unitExecStart(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatal(err)
	}
	var exec []string
	for _, o := range opts {
		if o.Section == "Service" && o.Name == "ExecStart" {
			exec = append(exec, o.Value)
		}
	}
	if len(exec) != 1 {
		t.Fatalf("ExecStart lines: %q", exec)
	}
	return exec[0]
}

// verifyUnit runs systemd-analyze verify on the unit, with ExecStart
// pointing at a file that exists (verify checks it).
func verifyUnit(t *testing.T, path, execStart string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit is parsed but not verified")
		return
	}
	data, _ := os.ReadFile(path)
	bin := fakeBinary(t)
	data = bytes.Replace(data, []byte(execStart), []byte(strings.Replace(execStart, "/usr/local/bin/bypass-hook", bin, 1)), 1)
	dir := t.TempDir()
	p := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	// Units it names but cannot find (containerd.service here) are not the
	// unit's fault; anything else is.
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "containerd.service") {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

// The Kubernetes manifests decode strictly into the API types, and the
// DaemonSet mounts what the plugin and the hook use at the paths they use:
// the hook runs on the node, so the binary and the config the plugin
// injects must be at the same path in the pod as on the node.
func TestKubernetesManifests(t *testing.T) {
	ds, cm, err := manifest.Kubernetes("kubernetes/bypass-hook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse([]byte(cm.Data["config.yaml"])); err != nil {
		t.Errorf("the ConfigMap's config.yaml: %v", err)
	}
	spec := ds.Spec.Template.Spec
	if !equalLabels(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the template's labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}

	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range spec.Volumes {
		switch {
		case v.HostPath != nil:
			hostPaths[v.Name] = v.HostPath.Path
		case v.ConfigMap != nil && v.ConfigMap.Name != cm.Name:
			t.Errorf("volume %s uses ConfigMap %q, the manifest has %q", v.Name, v.ConfigMap.Name, cm.Name)
		}
	}
	// hostDir finds the host directory mounted in c at the directory of
	// path, and checks it is mounted at the same path as on the host.
	hostDir := func(c corev1.Container, path string, wantWritable bool) {
		t.Helper()
		for _, m := range c.VolumeMounts {
			if m.MountPath != filepath.Dir(path) {
				continue
			}
			hp, ok := hostPaths[m.Name]
			switch {
			case !ok:
				t.Errorf("%s: %s is not a host path", c.Name, m.MountPath)
			case hp != m.MountPath:
				t.Errorf("%s: host %s is mounted at %s; the hook on the node would not find %s", c.Name, hp, m.MountPath, path)
			case wantWritable && m.ReadOnly:
				t.Errorf("%s: %s is read-only", c.Name, m.MountPath)
			}
			return
		}
		t.Errorf("%s: nothing is mounted at %s", c.Name, filepath.Dir(path))
	}

	byName := map[string]corev1.Container{}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		byName[c.Name] = c
	}
	plugin, ok := byName["nri-plugin"]
	if !ok {
		t.Fatal("no nri-plugin container")
	}
	o, cfgPath := nriArgs(t, plugin.Args)
	if o.SocketPath != api.DefaultSocketPath {
		t.Errorf("the plugin dials %s, not NRI's default socket", o.SocketPath)
	}
	hostDir(plugin, o.SocketPath, true) // connect(2) needs write access
	if !filepath.IsAbs(o.Binary) || filepath.Base(o.Binary) != install.HookBinaryName {
		t.Errorf("--binary %q", o.Binary)
	}
	hostDir(plugin, o.Binary, false)
	if cfgPath != config.DefaultPath {
		t.Errorf("--config %q: the hook's default is %s", cfgPath, config.DefaultPath)
	}
	hostDir(plugin, cfgPath, false)

	// The init containers put the binary and the config where the plugin
	// says they are.
	bin := byName["install-binary"]
	if want := []string{"install", "binary", filepath.Dir(o.Binary)}; !slices.Equal(bin.Args, want) {
		t.Errorf("install-binary args %q, want %q", bin.Args, want)
	}
	hostDir(bin, o.Binary, true)
	cfgInit := byName["install-config"]
	if len(cfgInit.Args) != 5 || cfgInit.Args[0] != "--config" || cfgInit.Args[4] != cfgPath || cfgInit.Args[2] != "install" || cfgInit.Args[3] != "config" {
		t.Errorf("install-config args %q", cfgInit.Args)
	} else if !strings.HasSuffix(cfgInit.Args[1], "/config.yaml") {
		t.Errorf("install-config reads %s, not the ConfigMap's key config.yaml", cfgInit.Args[1])
	}
	hostDir(cfgInit, cfgPath, true)

	for _, c := range byName {
		if c.Image != plugin.Image {
			t.Errorf("%s runs image %s, the plugin %s", c.Name, c.Image, plugin.Image)
		}
		// Only the plugin is privileged: late fencing enters containers'
		// network namespaces. The init steps need no capability.
		privileged := c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
		if sc := c.SecurityContext; sc == nil || privileged != (c.Name == "nri-plugin") {
			t.Errorf("%s: security context %+v", c.Name, sc)
		}
	}
	if !spec.HostPID {
		t.Error("the plugin's pod has no hostPID: late fencing opens /proc/PID/ns/net by the pid containerd gives")
	}
	// The late fence writes the hook's records: the state-dir step makes the
	// directory the plugin mounts, with the hook's default path.
	stateInit := byName["state-dir"]
	if want := []string{"install", "state-dir", config.Default().StateDir}; !slices.Equal(stateInit.Args, want) {
		t.Errorf("state-dir args %q, want %q", stateInit.Args, want)
	}
	hostDir(stateInit, config.Default().StateDir, true)
	hostDir(plugin, config.Default().StateDir+"/x", true)
	// The probes ask the plugin's health address.
	_, port, err := net.SplitHostPort(o.HealthAddr)
	if err != nil {
		t.Fatalf("--health-addr %q: %v", o.HealthAddr, err)
	}
	for what, pr := range map[string]*corev1.Probe{"/readyz": plugin.ReadinessProbe, "/healthz": plugin.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != what {
			t.Errorf("the plugin has no probe of %s: %+v", what, pr)
			continue
		}
		if p := pr.HTTPGet.Port; p.String() != port && !slices.ContainsFunc(plugin.Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == p.String() && strconv.Itoa(int(cp.ContainerPort)) == port
		}) {
			t.Errorf("the probe of %s asks port %s; the plugin serves %s", what, p.String(), o.HealthAddr)
		}
	}
	if ds.Namespace != "kube-system" || cm.Namespace != ds.Namespace {
		t.Errorf("namespaces %q %q", ds.Namespace, cm.Namespace)
	}
}

func equalLabels(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) > 0
}

// The hooks.d file in install/ is what `install hooks-dir` writes for the
// binary at /usr/local/bin under the example config.
func TestShippedHooksDirFile(t *testing.T) {
	data, err := os.ReadFile("hooks.d/bypass-hook.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := install.NewHooksDirEntry(install.Registration{Binary: "/usr/local/bin/bypass-hook-oci"}, config.SelectAll).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("install/hooks.d/bypass-hook.json is out of date; want:\n%s", want)
	}
}

// `make install` into a DESTDIR: the binaries under PREFIX, the example
// config, the sysctl file, and a hooks.d file that names the hook binary as
// installed; a second run keeps a config the operator changed.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		testnet.SkipOrFail(t, "make is not installed")
	}
	if _, err := exec.LookPath("go"); err != nil {
		testnet.SkipOrFail(t, "go is not installed")
	}
	dest := t.TempDir()
	bins := t.TempDir()
	makeInstall := func() string {
		t.Helper()
		cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr",
			"BIN="+filepath.Join(bins, "bypass-hook"), "HOOKBIN="+filepath.Join(bins, "bypass-hook-oci"))
		cmd.Env = append(os.Environ(), "BYPASS_HOOK_CONFIG=/nonexistent/must-be-ignored.yaml")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	makeInstall()
	for path, mode := range map[string]os.FileMode{
		"usr/bin/bypass-hook":                               0o755,
		"usr/bin/bypass-hook-oci":                           0o755,
		"etc/bypass-hook/config.yaml":                       0o644,
		"etc/sysctl.d/90-bypass-hook.conf":                  0o644,
		"usr/share/containers/oci/hooks.d/bypass-hook.json": 0o644,
		"etc/cdi/bypass-hook.io-fence.json":                 0o644,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, st, err, mode)
		}
	}
	hooksFile := filepath.Join(dest, "usr/share/containers/oci/hooks.d/bypass-hook.json")
	want, _ := install.NewHooksDirEntry(install.Registration{Binary: "/usr/bin/bypass-hook-oci"}, config.SelectAll).Marshal()
	if got, _ := os.ReadFile(hooksFile); !bytes.Equal(got, want) {
		t.Errorf("hooks.d file:\n%s\nwant:\n%s", got, want)
	}

	wantCDI, _ := install.MarshalCDISpec(install.NewCDISpec(install.Registration{Binary: "/usr/bin/bypass-hook-oci"}))
	if got, _ := os.ReadFile(filepath.Join(dest, "etc/cdi", install.CDIFileName)); !bytes.Equal(got, wantCDI) {
		t.Errorf("CDI spec:\n%s\nwant:\n%s", got, wantCDI)
	}

	// The operator edits the config; make install again keeps it, and the
	// hooks.d file follows its selection.
	cfg := filepath.Join(dest, "etc/bypass-hook/config.yaml")
	edited := "proxies: [198.51.100.1:3128]\nselection: annotated\n"
	if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := makeInstall(); !strings.Contains(out, "keeping the existing") {
		t.Errorf("make install did not say it keeps the config:\n%s", out)
	}
	if got, _ := os.ReadFile(cfg); string(got) != edited {
		t.Errorf("make install overwrote the config: %q", got)
	}
	want, _ = install.NewHooksDirEntry(install.Registration{Binary: "/usr/bin/bypass-hook-oci"}, config.SelectAnnotated).Marshal()
	if got, _ := os.ReadFile(hooksFile); !bytes.Equal(got, want) {
		t.Errorf("hooks.d file after selection: annotated:\n%s", got)
	}
}

// The monitor's DaemonSet decodes strictly, shares the plugin's image, and
// reaches what the monitor reads at the node's paths: the records in the
// hook's state directory (made 0700 by its init step, never by the kubelet,
// which would make it 0755 and so refused by every hook), the config, the
// host's pids and /dev/kmsg.
func TestMonitorManifest(t *testing.T) {
	data, err := os.ReadFile("kubernetes/bypass-hook-monitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := k8syaml.UnmarshalStrict(data, &ds); err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("the monitor needs hostPID: the records name namespaces by the host's /proc/PID/ns/net")
	}
	if !equalLabels(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the template's labels", ds.Spec.Selector.MatchLabels)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a host path", v.Name)
			continue
		}
		if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
			t.Errorf("volume %s: DirectoryOrCreate would have the kubelet make %s", v.Name, v.HostPath.Path)
		}
		vols[v.Name] = v
	}
	// hostPathAt returns the node path mounted at (or above) path in c.
	hostPathAt := func(c corev1.Container, path string) string {
		for _, m := range c.VolumeMounts {
			if rel, err := filepath.Rel(m.MountPath, path); err == nil && !strings.HasPrefix(rel, "..") {
				return filepath.Join(vols[m.Name].HostPath.Path, rel)
			}
		}
		return ""
	}
	def := config.Default()
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("want one init container and one container")
	}
	initC, mon := spec.InitContainers[0], spec.Containers[0]
	if len(initC.Args) != 3 || initC.Args[0] != "install" || initC.Args[1] != "state-dir" {
		t.Fatalf("init args %q", initC.Args)
	}
	if got := hostPathAt(initC, initC.Args[2]); got != def.StateDir {
		t.Errorf("the init step makes node path %q, the hook's state directory is %s", got, def.StateDir)
	}
	want := []string{"--config", config.DefaultPath, "monitor"}
	if len(mon.Args) < 3 || !slices.Equal(mon.Args[:3], want) {
		t.Errorf("monitor args %q, want them to start %q", mon.Args, want)
	}
	for path, hostPath := range map[string]string{def.StateDir: def.StateDir, config.DefaultPath: config.DefaultPath, "/dev/kmsg": "/dev/kmsg"} {
		if got := hostPathAt(mon, path); got != hostPath {
			t.Errorf("the monitor sees node path %q at %s, want %s", got, path, hostPath)
		}
	}
	plugin, _, err := manifest.Kubernetes("kubernetes/bypass-hook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if pluginImage := plugin.Spec.Template.Spec.Containers[0].Image; mon.Image != pluginImage || initC.Image != mon.Image {
		t.Errorf("the monitor runs image %s (init %s), not the plugin DaemonSet's %s", mon.Image, initC.Image, pluginImage)
	}
}

// Every container of the manifests runs the image named once at `&image`,
// as their headers say: one left at a fixed name would pull an image that
// is not there (the plugin never runs, and NRI fails open).
func TestManifestsImageSetOnce(t *testing.T) {
	const image = "registry.invalid/team/bypass-hook:v9.9.9"
	for _, name := range []string{"kubernetes/bypass-hook.yaml", "kubernetes/bypass-hook-monitor.yaml"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			data := setImageOnce(t, readFile(t, name), image)
			n := 0
			for _, doc := range yamlDocSep.Split(string(data), -1) {
				var meta struct{ Kind string }
				if err := k8syaml.Unmarshal([]byte(doc), &meta); err != nil {
					t.Fatal(err)
				}
				if meta.Kind != "DaemonSet" {
					continue
				}
				var ds appsv1.DaemonSet
				if err := k8syaml.UnmarshalStrict([]byte(doc), &ds); err != nil {
					t.Fatal(err)
				}
				spec := ds.Spec.Template.Spec
				for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
					n++
					if c.Image != image {
						t.Errorf("%s: container %s runs image %s, not the one set at &image (%s)", name, c.Name, c.Image, image)
					}
				}
			}
			if n == 0 {
				t.Errorf("%s: no container found", name)
			}
		})
	}
}
