// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables that steer the harness.
const (
	// EnvCache overrides the cache directory that scripts/build-k8s-deps.sh fills.
	EnvCache = "BYPASS_HOOK_E2E_CACHE"
	// EnvRequire=1 turns every "skip: missing X" into a test failure (set it in CI).
	EnvRequire = "BYPASS_HOOK_E2E_REQUIRE"
	// EnvKeep=1 keeps the temporary directory (logs, configs) of a failed test; everything
	// else (processes, mounts, namespaces) is still cleaned up.
	EnvKeep = "BYPASS_HOOK_E2E_KEEP"

	// DefaultCache is the cache directory when EnvCache is not set.
	DefaultCache = "/var/cache/bypass-hook-e2e"
	// BuildCommand is what builds the cache (as root).
	BuildCommand = "scripts/build-k8s-deps.sh"
)

// Addresses of the node side, inside the test's network namespace only.
const (
	Subnet4    = "198.51.100.128/25"
	Gateway4   = "198.51.100.129"
	Subnet6    = "2001:db8:2::/64"
	Gateway6   = "2001:db8:2::1"
	ProxyPort  = 3128
	HTTPPort   = 8080
	BridgeName = "bhk8s0"
	// K8sNamespace is the containerd namespace that CRI uses.
	K8sNamespace = "k8s.io"
)

// Deps are the cached binaries and image archives the tests need.
type Deps struct {
	Cache                        string
	Containerd, Shim, Ctr        string
	Crictl, Runc                 string
	CNIBinDir                    string
	PauseArchive, BusyboxArchive string
	PauseImage, BusyboxImage     string
	// Tools from Debian's packages, by absolute path.
	Nsenter, IP, Tinyproxy, Nft string
	// Versions as versions.env in the cache records them.
	Versions map[string]string
}

// LoadDeps finds the cached binaries and the host tools. It returns the problems it found
// (each one line, saying what is missing and what provides it); none means ready.
func LoadDeps() (*Deps, []string) {
	cache := os.Getenv(EnvCache)
	if cache == "" {
		cache = DefaultCache
	}
	d := &Deps{
		Cache:          cache,
		Containerd:     filepath.Join(cache, "bin", "containerd"),
		Shim:           filepath.Join(cache, "bin", "containerd-shim-runc-v2"),
		Ctr:            filepath.Join(cache, "bin", "ctr"),
		Crictl:         filepath.Join(cache, "bin", "crictl"),
		Runc:           filepath.Join(cache, "bin", "runc"),
		CNIBinDir:      filepath.Join(cache, "cni"),
		PauseArchive:   filepath.Join(cache, "images", "pause.oci.tar"),
		BusyboxArchive: filepath.Join(cache, "images", "busybox.oci.tar"),
		PauseImage:     "localhost/bypass-hook-e2e/pause:1",
		BusyboxImage:   "localhost/bypass-hook-e2e/busybox:1",
		Versions:       map[string]string{},
	}
	var missing, absent []string
	for _, f := range []string{d.Containerd, d.Shim, d.Ctr, d.Crictl, d.Runc,
		filepath.Join(d.CNIBinDir, "bridge"), filepath.Join(d.CNIBinDir, "host-local"),
		filepath.Join(d.CNIBinDir, "loopback"), d.PauseArchive, d.BusyboxArchive} {
		if _, err := os.Stat(f); err != nil {
			rel, _ := filepath.Rel(cache, f)
			absent = append(absent, rel)
		}
	}
	if len(absent) > 0 {
		build := BuildCommand
		if cache != DefaultCache {
			build = EnvCache + "=" + cache + " " + build
		}
		missing = append(missing, fmt.Sprintf("missing from the cache %s: %s; build them with `%s` (from the repository root)",
			cache, strings.Join(absent, ", "), build))
	}
	if b, err := os.ReadFile(filepath.Join(cache, "versions.env")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				d.Versions[k] = v
			}
		}
		if v := d.Versions["PAUSE_IMAGE"]; v != "" {
			d.PauseImage = v
		}
		if v := d.Versions["BUSYBOX_IMAGE"]; v != "" {
			d.BusyboxImage = v
		}
	}
	for _, tool := range []struct {
		dst       *string
		name, pkg string
	}{
		{&d.Nsenter, "nsenter", "util-linux"},
		{&d.IP, "ip", "iproute2"},
		{&d.Tinyproxy, "tinyproxy", "tinyproxy"},
		{&d.Nft, "nft", "nftables"},
	} {
		p, err := lookTool(tool.name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s not found: apt-get install -y %s", tool.name, tool.pkg))
		}
		*tool.dst = p
	}
	return d, missing
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// RequireDeps skips the test (or fails it, with BYPASS_HOOK_E2E_REQUIRE=1) unless it runs as
// root and every cached binary and host tool is there.
func RequireDeps(t testing.TB) *Deps {
	t.Helper()
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "needs root (it makes network namespaces and runs containerd)")
	}
	d, missing := LoadDeps()
	problems = append(problems, missing...)
	if len(problems) > 0 {
		msg := "e2e/k8s: " + strings.Join(problems, "; ")
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return d
}

// Options shape the containerd that NewEnv starts.
type Options struct {
	// DisableNRI turns containerd's NRI off (it is on by default).
	DisableNRI bool
	// NRIPlugins are pre-registered plugins: file name in the plugin dir ("10-bypass-hook")
	// to the binary it links to. containerd starts them itself.
	NRIPlugins map[string]string
	// NRIPluginConfigs are files for the plugin config dir: name ("10-bypass-hook.conf", or
	// "bypass-hook.conf") to content.
	NRIPluginConfigs map[string]string
	// NRIDefaultValidator enables containerd's built-in NRI default validator. With
	// NRIRequiredPlugins, containers are refused when one of them is not connected.
	NRIDefaultValidator bool
	// NRIRequiredPlugins sets default_validator.required_plugins (and enables the validator).
	NRIRequiredPlugins []string
	// NRITolerateMissingAnnotation sets default_validator.tolerate_missing_plugins_annotation.
	NRITolerateMissingAnnotation string
	// NRIRegistrationTimeout and NRIRequestTimeout override containerd's 5s and 2s.
	NRIRegistrationTimeout, NRIRequestTimeout time.Duration
	// ExtraTOML is appended verbatim to the generated config.toml.
	ExtraTOML string
	// NoIPv6 leaves IPv6 off the bridge and the pods.
	NoIPv6 bool
	// ContainerdEnv is added to containerd's environment. Pre-registered NRI plugins do not
	// inherit it: containerd 2.2 (NRI v0.11) starts them with NRI_PLUGIN_NAME, NRI_PLUGIN_IDX
	// and NRI_PLUGIN_SOCKET only; give them their settings in NRIPluginConfigs.
	ContainerdEnv []string
	// NoServers skips tinyproxy and the HTTP server on the gateway.
	NoServers bool
	// CDI turns on CRI's CDI injection (enable_cdi), with the spec directory Env.CDIDir.
	CDI bool
	// Containerd16 runs Debian 12's containerd 1.6 (/usr/bin/containerd, its shim and ctr,
	// and runc from /usr/sbin) with a version 2 config instead of the cache's 2.2: no NRI, no
	// CDI (it implies DisableNRI).
	Containerd16 bool
}

// debianContainerd are Debian 12's containerd 1.6 and runc, which Options.Containerd16 runs.
var debianContainerd = struct{ containerd, shim, ctr, runc string }{
	"/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/ctr", "/usr/sbin/runc",
}

// Env is one node: a network namespace with the CNI bridge, tinyproxy and an HTTP server on
// the gateway address, and a containerd whose every file is under Dir.
type Env struct {
	T    *testing.T
	Deps *Deps
	Opts Options

	Name      string // unique name of this environment, e.g. bhk8s-1a2b3c
	Dir       string // the temporary directory that holds everything
	NetNSName string // the node network namespace, as `ip netns` knows it
	NetNS     string // its path, for nsenter --net and setns

	ConfigPath   string // containerd's config.toml
	Socket       string // containerd's gRPC socket (CRI too)
	CrictlConfig string // crictl.yaml pointing at Socket
	CNINetwork   string // the CNI network name
	CNIConfDir   string
	CgroupParent string // cgroup parent of the pods, e.g. /bhk8s-1a2b3c
	RuncRoot     string
	LogDir       string // logs of containerd, tinyproxy and every Process

	NRISocket          string // where external NRI plugins connect
	NRIPluginDir       string // pre-registered NRI plugins (NN-name)
	NRIPluginConfigDir string
	CDIDir             string // cdi_spec_dirs: the only CDI spec directory this containerd reads

	HTTP *HTTPServer // the node-side HTTP server on the gateway, both families

	mu         sync.Mutex
	containerd *Process
	tinyproxy  *Process
	procs      []*Process
	sandboxes  map[string]bool // every sandbox id seen, for cleanup
	rulesetPre string
	closed     bool
}

// NewEnv builds a node and starts containerd in it, with images imported. It skips the test
// when the environment is not there (RequireDeps). Everything is undone by t.Cleanup, also
// when the test fails part way.
func NewEnv(t *testing.T, opts Options) *Env {
	t.Helper()
	d := RequireDeps(t)
	if opts.Containerd16 {
		requireDebianContainerd(t)
		dc := debianContainerd
		d.Containerd, d.Shim, d.Runc = dc.containerd, dc.shim, dc.runc
		opts.DisableNRI, opts.CDI = true, false
	}
	reapOnce.Do(func() { reapStale(t, d) })
	e := &Env{T: t, Deps: d, Opts: opts, sandboxes: map[string]bool{}}
	e.Name = dirPrefix + randHex(3)
	e.rulesetPre = hostRuleset(d)
	dir, err := os.MkdirTemp("", e.Name+".")
	if err != nil {
		t.Fatal(err)
	}
	e.Dir = dir
	t.Cleanup(e.Close)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(selfOwner()), 0o644); err != nil {
		t.Fatal(err)
	}

	e.NetNSName = e.Name
	e.NetNS = "/run/netns/" + e.NetNSName
	e.ConfigPath = filepath.Join(dir, "config.toml")
	e.Socket = filepath.Join(dir, "containerd.sock")
	e.CrictlConfig = filepath.Join(dir, "crictl.yaml")
	e.CNINetwork = e.Name
	e.CNIConfDir = filepath.Join(dir, "cni", "net.d")
	e.CgroupParent = "/" + e.Name
	e.RuncRoot = filepath.Join(dir, "runc")
	e.LogDir = filepath.Join(dir, "logs")
	e.NRISocket = filepath.Join(dir, "nri", "nri.sock")
	e.NRIPluginDir = filepath.Join(dir, "nri", "plugins")
	e.NRIPluginConfigDir = filepath.Join(dir, "nri", "conf.d")
	e.CDIDir = filepath.Join(dir, "cdi")
	for _, p := range []string{e.CNIConfDir, e.LogDir, e.NRIPluginDir, e.NRIPluginConfigDir, e.CDIDir,
		filepath.Join(dir, "pods"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	if err := e.setupNetNS(); err != nil {
		t.Fatalf("node network namespace: %v", err)
	}
	if !opts.NoServers {
		if err := e.startServers(); err != nil {
			t.Fatalf("node servers: %v", err)
		}
	}
	if err := e.writeConfigs(); err != nil {
		t.Fatalf("configs: %v", err)
	}
	if err := e.StartContainerd(); err != nil {
		t.Fatalf("containerd: %v", err)
	}
	for _, a := range []string{d.PauseArchive, d.BusyboxArchive} {
		if out, err := e.Ctr("images", "import", "--local", a); err != nil {
			t.Fatalf("import %s: %v\n%s", a, err, out)
		}
	}
	return e
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// run runs a command with a timeout and returns its combined output.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %v", name, strings.Join(args, " "), timeout)
	} else if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), err
}

// InNode returns a command that runs in the node network namespace (nsenter --net, which
// keeps the host's /sys and cgroup mounts, unlike `ip netns exec`).
func (e *Env) InNode(name string, args ...string) *exec.Cmd {
	return exec.Command(e.Deps.Nsenter, append([]string{"--net=" + e.NetNS, "--", name}, args...)...)
}

// NodeRun runs a command in the node network namespace and returns its combined output.
func (e *Env) NodeRun(name string, args ...string) (string, error) {
	return run(30*time.Second, e.Deps.Nsenter, append([]string{"--net=" + e.NetNS, "--", name}, args...)...)
}

func (e *Env) setupNetNS() error {
	if _, err := run(10*time.Second, e.Deps.IP, "netns", "add", e.NetNSName); err != nil {
		return err
	}
	ip := e.Deps.IP
	cmds := [][]string{
		{ip, "link", "set", "lo", "up"},
		// The bridge is made here, not by the CNI plugin at the first pod, so that the proxy
		// and the HTTP server can listen on the gateway before any pod exists. The plugin
		// takes it over as it is (same name, same gateway addresses).
		// A fixed MAC address: a bridge without one takes the lowest of its ports', so a pod
		// joining could change it and leave the older pods' neighbour entry for the gateway
		// (where the proxy listens) stale for seconds.
		{ip, "link", "add", BridgeName, "address", "02:00:00:b4:0e:01", "type", "bridge"},
		{ip, "addr", "add", Gateway4 + "/25", "dev", BridgeName},
	}
	if !e.Opts.NoIPv6 {
		cmds = append(cmds, []string{ip, "-6", "addr", "add", Gateway6 + "/64", "dev", BridgeName, "nodad"})
	}
	cmds = append(cmds, []string{ip, "link", "set", BridgeName, "up"})
	for _, c := range cmds {
		if _, err := e.NodeRun(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) startServers() error {
	addrs := []string{fmt.Sprintf("%s:%d", Gateway4, HTTPPort)}
	if !e.Opts.NoIPv6 {
		addrs = append(addrs, fmt.Sprintf("[%s]:%d", Gateway6, HTTPPort))
	}
	srv, err := StartHTTPServer(e.NetNS, addrs...)
	if err != nil {
		return err
	}
	e.HTTP = srv

	conf := filepath.Join(e.Dir, "tinyproxy.conf")
	var b strings.Builder
	fmt.Fprintf(&b, "Port %d\nListen %s\n", ProxyPort, Gateway4)
	if !e.Opts.NoIPv6 {
		fmt.Fprintf(&b, "Listen %s\n", Gateway6)
	}
	fmt.Fprintf(&b, "Timeout 30\nMaxClients 64\nLogLevel Info\nDisableViaHeader Yes\n")
	fmt.Fprintf(&b, "Allow %s\nAllow 127.0.0.1\n", Subnet4)
	if !e.Opts.NoIPv6 {
		fmt.Fprintf(&b, "Allow %s\n", Subnet6)
	}
	// No ConnectPort line: CONNECT to every port is allowed.
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return err
	}
	p, err := e.StartProcess("tinyproxy", []string{e.Deps.Tinyproxy, "-d", "-c", conf})
	if err != nil {
		return err
	}
	e.tinyproxy = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := ProbeTCP(e.NetNS, e.ProxyAddr4(), time.Second)
		if r.Outcome == Success {
			return nil
		}
		if time.Now().After(deadline) || !p.Running() {
			return fmt.Errorf("tinyproxy not listening on %s: %v\n%s", e.ProxyAddr4(), r, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ProxyAddr4 is tinyproxy's IPv4 address and port, on the gateway.
func (e *Env) ProxyAddr4() string { return fmt.Sprintf("%s:%d", Gateway4, ProxyPort) }

// ProxyAddr6 is tinyproxy's IPv6 address and port, on the gateway.
func (e *Env) ProxyAddr6() string { return fmt.Sprintf("[%s]:%d", Gateway6, ProxyPort) }

// HTTPAddr4 is the node HTTP server's IPv4 address and port, on the gateway.
func (e *Env) HTTPAddr4() string { return fmt.Sprintf("%s:%d", Gateway4, HTTPPort) }

// HTTPAddr6 is the node HTTP server's IPv6 address and port, on the gateway.
func (e *Env) HTTPAddr6() string { return fmt.Sprintf("[%s]:%d", Gateway6, HTTPPort) }

func (e *Env) writeConfigs() error {
	ranges := fmt.Sprintf(`[[{"subnet":%q,"gateway":%q}]`, Subnet4, Gateway4)
	if !e.Opts.NoIPv6 {
		ranges += fmt.Sprintf(`,[{"subnet":%q,"gateway":%q}]`, Subnet6, Gateway6)
	}
	ranges += "]"
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": %s,
        "dataDir": %q
      }
    }
  ]
}
`, e.CNINetwork, BridgeName, ranges, filepath.Join(e.Dir, "cni", "ipam"))
	if err := os.WriteFile(filepath.Join(e.CNIConfDir, "10-"+e.CNINetwork+".conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	crictl := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", e.Socket, e.Socket)
	if err := os.WriteFile(e.CrictlConfig, []byte(crictl), 0o644); err != nil {
		return err
	}
	for name, bin := range e.Opts.NRIPlugins {
		if err := os.Symlink(bin, filepath.Join(e.NRIPluginDir, name)); err != nil {
			return err
		}
	}
	for name, content := range e.Opts.NRIPluginConfigs {
		if err := os.WriteFile(filepath.Join(e.NRIPluginConfigDir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(e.ConfigPath, []byte(e.ContainerdConfig()), 0o644)
}

// requireDebianContainerd skips (or fails, under BYPASS_HOOK_E2E_REQUIRE=1) without Debian's
// containerd 1.6.
func requireDebianContainerd(t *testing.T) {
	t.Helper()
	dc := debianContainerd
	for _, f := range []string{dc.containerd, dc.shim, dc.runc} {
		if _, err := os.Stat(f); err != nil {
			msg := "e2e/k8s: Debian's containerd 1.6 needs " + f + " (apt-get install containerd runc)"
			if os.Getenv(EnvRequire) == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// containerd16Config is the config.toml of Options.Containerd16: version 2, the CRI plugin's
// keys as containerd 1.6 names them.
func (e *Env) containerd16Config() string {
	d := e.Deps
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	cri := `plugins."io.containerd.grpc.v1.cri"`
	p("version = 2")
	p("root = '%s'", filepath.Join(e.Dir, "root"))
	p("state = '%s'", filepath.Join(e.Dir, "state"))
	p("")
	p("[grpc]")
	p("  address = '%s'", e.Socket)
	p("[ttrpc]")
	p("  address = '%s'", e.Socket+".ttrpc")
	p("[debug]")
	p("  level = 'debug'")
	p("")
	p("[%s]", cri)
	p("  sandbox_image = '%s'", d.PauseImage)
	p("  stream_server_address = '127.0.0.1'")
	p("  stream_server_port = '0'")
	p("  restrict_oom_score_adj = true")
	p("  [%s.containerd]", cri)
	p("    snapshotter = 'overlayfs'")
	p("    default_runtime_name = 'runc'")
	p("    [%s.containerd.runtimes.runc]", cri)
	p("      runtime_type = 'io.containerd.runc.v2'")
	p("      [%s.containerd.runtimes.runc.options]", cri)
	p("        BinaryName = '%s'", d.Runc)
	p("        Root = '%s'", e.RuncRoot)
	p("        SystemdCgroup = false")
	p("  [%s.cni]", cri)
	p("    bin_dir = '%s'", d.CNIBinDir)
	p("    conf_dir = '%s'", e.CNIConfDir)
	p("    max_conf_num = 1")
	p("  [%s.registry]", cri)
	p("    config_path = '%s'", filepath.Join(e.Dir, "certs.d"))
	p("[plugins.\"io.containerd.internal.v1.opt\"]")
	p("  path = '%s'", filepath.Join(e.Dir, "opt"))
	if e.Opts.ExtraTOML != "" {
		p("%s", e.Opts.ExtraTOML)
	}
	return b.String()
}

// ContainerdConfig renders the config.toml for this environment and its Options.
func (e *Env) ContainerdConfig() string {
	if e.Opts.Containerd16 {
		return e.containerd16Config()
	}
	d, o := e.Deps, e.Opts
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("version = 3")
	p("root = '%s'", filepath.Join(e.Dir, "root"))
	p("state = '%s'", filepath.Join(e.Dir, "state"))
	p("temp = '%s'", filepath.Join(e.Dir, "tmp"))
	p("imports = []")
	p("")
	p("[grpc]")
	p("  address = '%s'", e.Socket)
	p("[ttrpc]")
	p("  address = '%s'", e.Socket+".ttrpc")
	p("[debug]")
	p("  level = 'debug'")
	p("")
	p("[plugins]")
	p("  [plugins.'io.containerd.cri.v1.images']")
	p("    snapshotter = 'overlayfs'")
	p("    [plugins.'io.containerd.cri.v1.images'.pinned_images]")
	p("      sandbox = '%s'", d.PauseImage)
	p("    [plugins.'io.containerd.cri.v1.images'.registry]")
	p("      config_path = '%s'", filepath.Join(e.Dir, "certs.d"))
	p("  [plugins.'io.containerd.cri.v1.runtime']")
	p("    restrict_oom_score_adj = true")
	p("    netns_mounts_under_state_dir = true")
	p("    enable_cdi = %v", o.CDI)
	p("    cdi_spec_dirs = ['%s']", e.CDIDir)
	p("    [plugins.'io.containerd.cri.v1.runtime'.containerd]")
	p("      default_runtime_name = 'runc'")
	p("      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]")
	p("        runtime_type = 'io.containerd.runc.v2'")
	p("        runtime_path = '%s'", d.Shim)
	p("        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]")
	p("          BinaryName = '%s'", d.Runc)
	p("          Root = '%s'", e.RuncRoot)
	p("          SystemdCgroup = false")
	p("    [plugins.'io.containerd.cri.v1.runtime'.cni]")
	p("      bin_dirs = ['%s']", d.CNIBinDir)
	p("      conf_dir = '%s'", e.CNIConfDir)
	p("      max_conf_num = 1")
	p("  [plugins.'io.containerd.grpc.v1.cri']")
	p("    stream_server_address = '127.0.0.1'")
	p("    stream_server_port = '0'")
	p("  [plugins.'io.containerd.internal.v1.opt']")
	p("    path = '%s'", filepath.Join(e.Dir, "opt"))
	p("  [plugins.'io.containerd.image-verifier.v1.bindir']")
	p("    bin_dir = '%s'", filepath.Join(e.Dir, "image-verifier"))
	p("  [plugins.'io.containerd.nri.v1.nri']")
	p("    disable = %v", o.DisableNRI)
	p("    socket_path = '%s'", e.NRISocket)
	p("    plugin_path = '%s'", e.NRIPluginDir)
	p("    plugin_config_path = '%s'", e.NRIPluginConfigDir)
	if o.NRIRegistrationTimeout > 0 {
		p("    plugin_registration_timeout = '%s'", o.NRIRegistrationTimeout)
	}
	if o.NRIRequestTimeout > 0 {
		p("    plugin_request_timeout = '%s'", o.NRIRequestTimeout)
	}
	if o.NRIDefaultValidator || len(o.NRIRequiredPlugins) > 0 || o.NRITolerateMissingAnnotation != "" {
		p("    [plugins.'io.containerd.nri.v1.nri'.default_validator]")
		p("      enable = true")
		q := make([]string, len(o.NRIRequiredPlugins))
		for i, s := range o.NRIRequiredPlugins {
			q[i] = "'" + s + "'"
		}
		p("      required_plugins = [%s]", strings.Join(q, ", "))
		if o.NRITolerateMissingAnnotation != "" {
			p("      tolerate_missing_plugins_annotation = '%s'", o.NRITolerateMissingAnnotation)
		}
	}
	if o.ExtraTOML != "" {
		p("%s", o.ExtraTOML)
	}
	return b.String()
}

// StartContainerd starts containerd in the node namespace and waits until CRI reports the
// runtime and the network ready (and the NRI socket exists, when NRI is on).
func (e *Env) StartContainerd() error {
	e.mu.Lock()
	if e.containerd != nil && e.containerd.Running() {
		e.mu.Unlock()
		return errors.New("containerd is already running")
	}
	e.mu.Unlock()
	env := append([]string{"PATH=" + filepath.Dir(e.Deps.Containerd) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		e.Opts.ContainerdEnv...)
	p, err := e.StartProcess("containerd", []string{e.Deps.Containerd, "--config", e.ConfigPath}, env...)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.containerd = p
	e.mu.Unlock()
	if err := e.WaitCRIReady(60 * time.Second); err != nil {
		return err
	}
	if !e.Opts.DisableNRI {
		if err := waitFile(e.NRISocket, 10*time.Second); err != nil {
			return fmt.Errorf("NRI socket: %w\n%s", err, tail(p.Log(), 30))
		}
	}
	return nil
}

// StopContainerd stops containerd (SIGTERM, then SIGKILL after 15 s). Pods and their shims
// keep running, as on a real node.
func (e *Env) StopContainerd() error {
	e.mu.Lock()
	p := e.containerd
	e.mu.Unlock()
	if p == nil || !p.Running() {
		return nil
	}
	return p.Stop(15 * time.Second)
}

// RestartContainerd stops and starts containerd with the same config.
func (e *Env) RestartContainerd() error {
	if err := e.StopContainerd(); err != nil {
		return err
	}
	return e.StartContainerd()
}

// Containerd is the running containerd process (nil before the first start).
func (e *Env) Containerd() *Process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.containerd
}

// ContainerdLog is containerd's log so far (all its runs).
func (e *Env) ContainerdLog() string {
	b, _ := os.ReadFile(filepath.Join(e.LogDir, "containerd.log"))
	return string(b)
}

// ContainerdLogSize is the current length of containerd's log: pass it as since to the Wait
// functions to look only at what comes after.
func (e *Env) ContainerdLogSize() int { return len(e.ContainerdLog()) }

// WaitContainerdLog waits until containerd's log, from byte offset since, matches re (a
// regular expression; logrus's escaped quotes \" are read as plain quotes).
func (e *Env) WaitContainerdLog(since int, re string, timeout time.Duration) error {
	rx, err := regexp.Compile(re)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		log := e.ContainerdLog()
		if since < len(log) && rx.MatchString(strings.ReplaceAll(log[since:], `\"`, `"`)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd's log has no %q after %v:\n%s", re, timeout, tail(log, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitNRIPlugin waits until containerd logs that the NRI plugin name ("bypass-hook", or with
// its index, "10-bypass-hook") is connected and synchronized (external) or synchronized
// (pre-registered), after log offset since.
func (e *Env) WaitNRIPlugin(since int, name string, timeout time.Duration) error {
	n := nriNameRE(name)
	return e.WaitContainerdLog(since, `plugin "`+n+`" connected and synchronized|pre-installed NRI plugin "`+n+`" synchronization success`, timeout)
}

// WaitNRIPluginGone waits until containerd logs that its connection to the NRI plugin closed.
func (e *Env) WaitNRIPluginGone(since int, name string, timeout time.Duration) error {
	return e.WaitContainerdLog(since, `connection to plugin "`+nriNameRE(name)+`" closed`, timeout)
}

func nriNameRE(name string) string {
	if len(name) > 3 && name[2] == '-' && name[0] >= '0' && name[0] <= '9' && name[1] >= '0' && name[1] <= '9' {
		return regexp.QuoteMeta(name)
	}
	return `[0-9][0-9]-` + regexp.QuoteMeta(name)
}

// Path is a path under the environment's directory (for the hook's config, state dir, logs).
func (e *Env) Path(elem ...string) string { return filepath.Join(append([]string{e.Dir}, elem...)...) }

// WriteFile writes content to Path(rel), making its directory, and returns the path.
func (e *Env) WriteFile(rel, content string) string {
	e.T.Helper()
	p := e.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.T.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.T.Fatal(err)
	}
	return p
}

// RunInNetNS runs a host command (iptables-save, nft, ip) in the network namespace at nsPath,
// for example a pod's, and returns its combined output.
func (e *Env) RunInNetNS(nsPath, name string, args ...string) (string, error) {
	return run(30*time.Second, e.Deps.Nsenter, append([]string{"--net=" + nsPath, "--", name}, args...)...)
}

// WaitCRIReady polls `crictl info` until RuntimeReady and NetworkReady are true.
func (e *Env) WaitCRIReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p := e.Containerd(); p != nil && !p.Running() {
			return fmt.Errorf("containerd exited: %v\n%s", p.Err(), tail(p.Log(), 40))
		}
		if _, err := os.Stat(e.Socket); err == nil {
			var info struct {
				Status struct {
					Conditions []struct {
						Type   string `json:"type"`
						Status bool   `json:"status"`
					} `json:"conditions"`
				} `json:"status"`
			}
			out, err := e.Crictl("info")
			if err == nil && json.Unmarshal([]byte(out), &info) == nil {
				ready := 0
				for _, c := range info.Status.Conditions {
					if (c.Type == "RuntimeReady" || c.Type == "NetworkReady") && c.Status {
						ready++
					}
				}
				if ready == 2 {
					return nil
				}
			}
			last = out
			if err != nil {
				last = err.Error()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRI not ready after %v: %s\n%s", timeout, tail(last, 20), tail(e.ContainerdLog(), 40))
}

// WaitNRISocket waits until the NRI socket exists.
func (e *Env) WaitNRISocket(timeout time.Duration) error { return waitFile(e.NRISocket, timeout) }

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ctr runs ctr against this containerd, in the k8s.io namespace.
func (e *Env) Ctr(args ...string) (string, error) {
	return run(2*time.Minute, e.Deps.Ctr, append([]string{"--address", e.Socket, "--namespace", K8sNamespace}, args...)...)
}

// Process is a program the harness started in the node namespace, with its output in a log file.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	err     error
}

// StartProcess starts argv in the node network namespace with output appended to
// LogDir/<name>.log. env is added to the harness's environment. The process is stopped at
// cleanup. Use it for the NRI plugin (`bypass-hook nri ...`).
func (e *Env) StartProcess(name string, argv []string, env ...string) (*Process, error) {
	logPath := filepath.Join(e.LogDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := e.InNode(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a Ctrl-C of `go test` does not hit it before cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// Pid is the process id (nsenter execs the program, so it is the program's own).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Running tells whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Err is the exit error after the process ended.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.Pid(), timeout)
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs. It returns nil once the process is gone.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.Signal(syscall.SIGTERM)
	if p.Wait(grace) == nil {
		return nil
	}
	_ = p.Signal(syscall.SIGKILL)
	return p.Wait(10 * time.Second)
}

// Log is the process's log file so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostRuleset is the machine's own nftables ruleset (iptables-nft included), read in the
// initial network namespace, plus iptables-legacy's where that is installed.
func hostRuleset(d *Deps) string {
	out, err := run(20*time.Second, d.Nft, "list", "ruleset")
	if err != nil {
		out = "nft error: " + err.Error()
	}
	if p, err := lookTool("iptables-legacy-save"); err == nil {
		for _, tool := range []string{p, strings.Replace(p, "iptables", "ip6tables", 1)} {
			if o, err := run(20*time.Second, tool); err == nil {
				// The chains' packet counters move with the host's own traffic whenever the
				// legacy tables exist (any iptables-legacy run loads them): not a change.
				out += "\n" + legacyCounters.ReplaceAllString(stripComments(o), "[0:0]")
			}
		}
	}
	return out
}

var legacyCounters = regexp.MustCompile(`\[\d+:\d+\]`)

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// CheckHostUntouched reports (as test errors) any change the environment made to the machine's
// own network namespace: its ruleset, and a link or address of the node range.
func (e *Env) CheckHostUntouched() {
	t := e.T
	t.Helper()
	if now := hostRuleset(e.Deps); now != e.rulesetPre {
		t.Errorf("the machine's own ruleset changed during the test:\nbefore:\n%s\nafter:\n%s", e.rulesetPre, now)
	}
	if out, err := run(10*time.Second, e.Deps.IP, "-br", "addr"); err == nil {
		for _, bad := range []string{BridgeName, "198.51.100.1", "2001:db8:2:"} {
			if strings.Contains(out, bad) {
				t.Errorf("the machine's own namespace has %q:\n%s", bad, out)
			}
		}
	}
}

// Close tears everything down: pods, started processes, containerd, leftover shims and
// containers, mounts under Dir, the pods' cgroups, the node namespace and Dir. It runs at
// t.Cleanup, also after a failure; calling it again does nothing.
func (e *Env) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.mu.Unlock()
	t := e.T
	failed := t.Failed()
	if failed {
		e.dumpLogs()
	}

	// 1. Pods, through CRI, while containerd runs.
	if p := e.Containerd(); p != nil && p.Running() {
		if out, err := e.Crictl("pods", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				e.noteSandbox(id)
				if _, err := e.Crictl("stopp", id); err != nil {
					t.Logf("cleanup: stopp %s: %v", id, err)
				}
				if _, err := e.Crictl("rmp", "-f", id); err != nil {
					t.Logf("cleanup: rmp %s: %v", id, err)
				}
			}
		}
	}
	// 2. Processes (plugins, tinyproxy), then containerd.
	e.mu.Lock()
	procs := append([]*Process(nil), e.procs...)
	e.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(15 * time.Second); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	if e.HTTP != nil {
		e.HTTP.Close()
	}
	e.teardown(t.Logf, t.Errorf)
	e.CheckHostUntouched()
	if failed && os.Getenv(EnvKeep) == "1" {
		_ = os.WriteFile(filepath.Join(e.Dir, keptMarker), nil, 0o644)
		t.Logf("keeping %s (%s=1)", e.Dir, EnvKeep)
		return
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// teardown removes what may survive a containerd that is gone: shims of this containerd and
// the containers runc still knows, mounts under Dir, the pods' cgroups, the shim sockets and
// CNI result files that containerd and libcni put outside Dir, and the node namespace.
func (e *Env) teardown(logf, errorf func(string, ...any)) {
	for _, pid := range e.shimPids() {
		logf("cleanup: killing leftover shim pid %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if ents, err := os.ReadDir(e.RuncRoot); err == nil {
		for _, ns := range ents {
			root := filepath.Join(e.RuncRoot, ns.Name())
			cs, _ := os.ReadDir(root)
			for _, c := range cs {
				e.noteSandbox(c.Name())
				logf("cleanup: runc delete --force %s", c.Name())
				if _, err := run(30*time.Second, e.Deps.Runc, "--root", root, "delete", "--force", c.Name()); err != nil {
					logf("cleanup: %v", err)
				}
			}
		}
	}
	// Mounts under Dir (rootfs overlays, netns bind mounts, shm), deepest first.
	for _, m := range mountsUnder(e.Dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			logf("cleanup: umount %s: %v", m, err)
		}
	}
	removeCgroupTree(e.CgroupParent, logf)
	e.mu.Lock()
	ids := make([]string, 0, len(e.sandboxes))
	for id := range e.sandboxes {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		_ = os.Remove(ShimSocketPath(e.Socket, K8sNamespace, id))
		_ = os.Remove(ShimSocketPath(e.Socket, K8sNamespace, filepath.Join(id, "debug")))
		for _, f := range []string{e.CNINetwork + "-" + id + "-eth0", "cni-loopback-" + id + "-lo"} {
			_ = os.Remove(filepath.Join("/var/lib/cni/results", f))
		}
	}
	if e.NetNSName != "" {
		if _, err := os.Stat(e.NetNS); err == nil {
			if _, err := run(10*time.Second, e.Deps.IP, "netns", "del", e.NetNSName); err != nil {
				errorf("cleanup: %v", err)
			}
		}
	}
}

const (
	ownerFile  = "owner" // "<pid> <start time>" of the test process that made the environment
	keptMarker = "KEPT"  // left by BYPASS_HOOK_E2E_KEEP=1: the reaper leaves the directory alone
	dirPrefix  = "bhk8s-"
)

var reapOnce sync.Once

// reapStale cleans up environments of test processes that died without their cleanup (a
// killed `go test`): their containerd and every process whose command line names their
// directory, shims, containers, mounts, cgroups, namespace and directory.
func reapStale(t *testing.T, d *Deps) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*.*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil || ownerAlive(strings.TrimSpace(string(b))) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, keptMarker)); err == nil {
			continue
		}
		name := strings.SplitN(filepath.Base(dir), ".", 2)[0]
		t.Logf("reaping the environment %s of a test process that is gone", dir)
		for _, pid := range pidsMentioning(dir + "/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		e := &Env{T: t, Deps: d, Name: name, Dir: dir, NetNSName: name, NetNS: "/run/netns/" + name,
			Socket: filepath.Join(dir, "containerd.sock"), RuncRoot: filepath.Join(dir, "runc"),
			CgroupParent: "/" + name, CNINetwork: name, sandboxes: map[string]bool{}}
		time.Sleep(100 * time.Millisecond)
		e.teardown(t.Logf, t.Logf)
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("reap: %v", err)
		}
	}
}

// selfOwner identifies this test process: pid and start time (so a reused pid does not count).
func selfOwner() string {
	return fmt.Sprintf("%d %s", os.Getpid(), procStart(os.Getpid()))
}

func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" { // a zombie is gone (PID 1 here may be slow to reap)
		return ""
	}
	return f[19] // field 22, starttime
}

func ownerAlive(owner string) bool {
	var pid int
	var start string
	if _, err := fmt.Sscanf(owner, "%d %s", &pid, &start); err != nil {
		return false
	}
	return procStart(pid) == start && start != ""
}

// pidsMentioning lists the processes whose command line contains s.
func pidsMentioning(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (e *Env) dumpLogs() {
	ents, _ := os.ReadDir(e.LogDir)
	for _, ent := range ents {
		b, _ := os.ReadFile(filepath.Join(e.LogDir, ent.Name()))
		lines := strings.Split(tail(string(b), 60), "\n")
		for i, l := range lines {
			if len(l) > 400 {
				lines[i] = l[:400] + " ..."
			}
		}
		e.T.Logf("--- last lines of %s (all in %s):\n%s", ent.Name(), e.LogDir, strings.Join(lines, "\n"))
	}
}

func (e *Env) noteSandbox(id string) {
	e.mu.Lock()
	e.sandboxes[id] = true
	e.mu.Unlock()
}

// ShimSocketPath is where containerd 2.2 puts a shim's socket: /run/containerd/s/<sha256 of
// address/namespace/id>, whatever root and state say (pkg/shim/util_unix.go SocketAddress).
// The id is the pod sandbox's; with containerd at debug level the shim has a second socket,
// for the id "<sandbox id>/debug".
func ShimSocketPath(address, ns, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(address, ns, id)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

// shimPids are the shims started for this containerd: their command line names its socket.
func (e *Env) shimPids() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == e.Socket {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			ms = append(ms, mp)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// MountsUnder lists the mounts left under the environment's directory.
func (e *Env) MountsUnder() []string { return mountsUnder(e.Dir) }

// CgroupDirs lists the cgroup directories under the pods' cgroup parent, in every hierarchy
// (pods and containers appear there as <parent>/<id>).
func (e *Env) CgroupDirs() []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		base := filepath.Join(r, e.CgroupParent)
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != base {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	return dirs
}

func removeCgroupTree(parent string, logf func(string, ...any)) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		base := filepath.Join(r, parent)
		if _, err := os.Stat(base); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				logf("cleanup: rmdir %s: %v", d, err)
			}
		}
	}
}
