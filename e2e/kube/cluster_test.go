// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Environment variables, as e2e/k8s reads them.
const (
	envCache     = "BYPASS_HOOK_E2E_CACHE"
	envRequire   = "BYPASS_HOOK_E2E_REQUIRE"
	envKeep      = "BYPASS_HOOK_E2E_KEEP"
	defaultCache = "/var/cache/bypass-hook-e2e"
)

// The node's addresses, inside the test's network namespace only. The service range is
// never routed: no kube-proxy runs, the apiserver only needs one.
const (
	subnet       = "198.51.100.128/25"
	gateway      = "198.51.100.129"
	serviceRange = "198.51.100.0/27"
	proxyPort    = 3128
	httpPort     = 8080
	httpBody     = "bypass-hook kube e2e ok\n"
	bridge       = "bhkube0"
	nodeName     = "bhkube-node"
	apiServer    = "https://127.0.0.1:6443"
	hookImage    = "localhost/bypass-hook:e2e"
	// The node's paths the chart mounts, inside the node's mount namespace.
	containerdSock = "/run/containerd/containerd.sock"
	nriSock        = "/var/run/nri/nri.sock"
)

// kubeletSysctls are the kernel settings the kubelet sets when they differ (protectKernelDefaults
// false): the node's mount namespace shows it these values, in files, so the machine's own are
// left as they are.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// deps are the cached binaries (by name) and image archives.
type deps struct {
	cache, cni                string
	bin                       map[string]string
	pauseTar, busyboxTar      string
	pauseImage, busyboxImage  string
	nsenter, unshare, ip, mnt string
	tinyproxy, podman         string
}

var cacheBins = []string{"containerd", "containerd-shim-runc-v2", "ctr", "crictl", "runc",
	"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "helm"}

// requireDeps skips (or fails, under BYPASS_HOOK_E2E_REQUIRE=1) unless the test runs as root
// with every cached binary and host tool.
func requireDeps(t *testing.T) *deps {
	t.Helper()
	cache := os.Getenv(envCache)
	if cache == "" {
		cache = defaultCache
	}
	d := &deps{cache: cache, cni: filepath.Join(cache, "cni"), bin: map[string]string{},
		pauseTar:     filepath.Join(cache, "images", "pause.oci.tar"),
		busyboxTar:   filepath.Join(cache, "images", "busybox.oci.tar"),
		pauseImage:   "localhost/bypass-hook-e2e/pause:1",
		busyboxImage: "localhost/bypass-hook-e2e/busybox:1",
	}
	var problems, absent []string
	if os.Geteuid() != 0 || hookBin == "" {
		problems = append(problems, "needs root (it runs a kubelet, containerd and network namespaces)")
	}
	files := []string{d.pauseTar, d.busyboxTar, filepath.Join(d.cni, "bridge"), filepath.Join(d.cni, "host-local"), filepath.Join(d.cni, "loopback")}
	for _, b := range cacheBins {
		d.bin[b] = filepath.Join(cache, "bin", b)
		files = append(files, d.bin[b])
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			rel, _ := filepath.Rel(cache, f)
			absent = append(absent, rel)
		}
	}
	if len(absent) > 0 {
		problems = append(problems, fmt.Sprintf("missing from the cache %s: %s; build them with `make e2e-kube-deps` (as root)",
			cache, strings.Join(absent, ", ")))
	}
	if b, err := os.ReadFile(filepath.Join(cache, "versions.env")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			switch k {
			case "PAUSE_IMAGE":
				d.pauseImage = v
			case "BUSYBOX_IMAGE":
				d.busyboxImage = v
			}
		}
	}
	for _, tool := range []struct {
		dst       *string
		name, pkg string
	}{
		{&d.nsenter, "nsenter", "util-linux"}, {&d.unshare, "unshare", "util-linux"}, {&d.mnt, "mount", "mount"},
		{&d.ip, "ip", "iproute2"}, {&d.tinyproxy, "tinyproxy", "tinyproxy"}, {&d.podman, "podman", "podman"},
	} {
		p, err := testnet.Tool(tool.name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s not found: apt-get install -y %s", tool.name, tool.pkg))
		}
		*tool.dst = p
	}
	if len(problems) > 0 {
		msg := "e2e/kube: " + strings.Join(problems, "; ")
		if os.Getenv(envRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return d
}

// cluster is one node with its control plane.
type cluster struct {
	t          *testing.T
	d          *deps
	dir        string
	netnsName  string
	netns      *testnet.Netns // the node's network namespace
	holder     *exec.Cmd      // sleeps in the node's mount namespace
	mntNS      *pinnedNS      // that namespace, held open until close has emptied it
	cgroup     string         // the kubelet's cgroup root, e.g. /bhkube-1a2b3c
	kubeconfig string
	procs      map[string]*proc
	http       *http.Server
	// netnsUnderState has containerd bind-mount pods' network namespaces under its state
	// directory (netns_mounts_under_state_dir) instead of its default, /run/netns.
	netnsUnderState bool
}

// clusterOption changes a cluster before it starts.
type clusterOption func(*cluster)

// defaultNetns leaves containerd's pod network namespaces at its default place, /run/netns.
func defaultNetns(c *cluster) { c.netnsUnderState = false }

// proc is a daemon of the node, its output in dir/logs/NAME.log.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newCluster starts the node and its control plane and waits until the node is Ready with the
// images imported. t.Cleanup undoes everything, also after a failure part way.
func newCluster(t *testing.T, opts ...clusterOption) *cluster {
	t.Helper()
	d := requireDeps(t)
	name := "bhkube-" + randHex(3)
	dir, err := os.MkdirTemp("", name+".")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, d: d, dir: dir, netnsName: name, cgroup: "/" + name, procs: map[string]*proc{},
		netns: &testnet.Netns{Name: name, Path: "/run/netns/" + name}, netnsUnderState: true}
	for _, o := range opts {
		o(c)
	}
	t.Cleanup(c.close)
	for _, sub := range []string{"logs", "etc/upper", "etc/work", "sysctl", "cni/net.d", "kubelet", "helm", "pki"} {
		if err := os.MkdirAll(c.path(sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.must(c.setupNetwork())
	c.must(c.setupMountNS())
	c.must(c.setupCgroups())
	c.must(c.writeSecrets())
	c.must(c.startContainerd())
	c.must(c.startServers())
	c.must(c.startControlPlane())
	c.must(c.startKubelet())
	c.must(c.importHookImage())
	return c
}

func (c *cluster) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// run runs a command with a timeout and returns its standard output; the error says the
// command and has its standard error (tools log warnings there, as containerd's on cgroup v1).
func run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("%s %s: timed out after %v: %s", name, strings.Join(args, " "), timeout, bytes.TrimSpace(stderr.Bytes()))
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()), bytes.TrimSpace(stdout.Bytes()))
	}
	return stdout.String(), nil
}

// nodeArgs prefixes a command line so that it runs in the node's network and mount namespaces.
func (c *cluster) nodeArgs(args ...string) []string {
	return append([]string{"--target", strconv.Itoa(c.holder.Process.Pid), "--mount", "--net", "--"}, args...)
}

// nodeRun runs a command on the node (its network and mount namespaces).
func (c *cluster) nodeRun(timeout time.Duration, args ...string) (string, error) {
	return run(timeout, c.d.nsenter, c.nodeArgs(args...)...)
}

func (c *cluster) setupNetwork() error {
	ip := c.d.ip
	if _, err := run(10*time.Second, ip, "netns", "add", c.netnsName); err != nil {
		return err
	}
	for _, a := range [][]string{
		{"link", "set", "lo", "up"},
		// Made before the first pod so that the proxy can listen on the gateway; the CNI
		// bridge plugin takes it over as it is.
		// A fixed address: a bridge without one takes its ports' lowest, so it changes as pods
		// come and go, and the pods' neighbour entries for the gateway go stale.
		{"link", "add", bridge, "address", "02:00:c6:33:64:81", "type", "bridge"},
		{"addr", "add", gateway + "/25", "dev", bridge},
		{"link", "set", bridge, "up"},
	} {
		if _, err := run(10*time.Second, ip, append([]string{"-n", c.netnsName}, a...)...); err != nil {
			return err
		}
	}
	return nil
}

// setupMountNS starts the holder of the node's mount namespace and mounts over the node paths
// the chart and the kubelet write to.
func (c *cluster) setupMountNS() error {
	holder := exec.Command(c.d.nsenter, "--net="+c.netns.Path, "--", c.d.unshare, "--mount", "--propagation", "private", "--", "sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.holdMountNS(holder); err != nil {
		return err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "set -e\n")
	// /run (and /var/run) of the node: the NRI socket, containerd's socket, the hook's state.
	fmt.Fprintf(&s, "mount -t tmpfs -o mode=755 bhkube-run /run\nmkdir -p /run/nri /run/containerd\n")
	fmt.Fprintf(&s, "mount -t tmpfs -o mode=755 bhkube-opt /opt\n")
	// The kubelet links containers' logs in /var/log/containers.
	fmt.Fprintf(&s, "mount -t tmpfs -o mode=755 bhkube-log /var/log\n")
	fmt.Fprintf(&s, "mount -t overlay -o lowerdir=/etc,upperdir=%s,workdir=%s bhkube-etc /etc\n", c.path("etc/upper"), c.path("etc/work"))
	for k, v := range kubeletSysctls {
		f := c.path("sysctl", strings.ReplaceAll(k, "/", "."))
		if err := os.WriteFile(f, []byte(v+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&s, "mount --bind %s /proc/sys/%s\n", f, k)
	}
	// Shared, as systemd makes a node's mounts: a HostToContainer volume needs its host path
	// on a shared or slave mount (containerd refuses it otherwise). The peer groups are this
	// namespace's own: the namespace was made private, so nothing reaches the machine's.
	fmt.Fprintf(&s, "mount --make-rshared /\n")
	if out, err := c.nodeRun(30*time.Second, "sh", "-c", s.String()); err != nil {
		return fmt.Errorf("the node's mounts: %v\n%s", err, out)
	}
	return nil
}

// holdMountNS starts holder, a command that ends up running sleep in a mount namespace of its
// own, as the holder of the node's mount namespace, and pins that namespace (c.mntNS).
func (c *cluster) holdMountNS(holder *exec.Cmd) error {
	if err := holder.Start(); err != nil {
		return fmt.Errorf("starting the node's mount namespace: %w", err)
	}
	c.holder = holder
	path := fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid)
	self, _ := os.Readlink("/proc/self/ns/mnt")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Once it runs sleep it has made its namespace, and keeps it: the holder is ours and
		// not waited for, so its pid is not anyone else's.
		ns, _ := os.Readlink(path)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid))
		if ns != "" && ns != self && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the node's mount namespace holder did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pin, err := pinNS(path)
	if err != nil {
		return fmt.Errorf("the node's mount namespace: %w (the holder exited?)", err)
	}
	c.mntNS = pin
	return nil
}

// cgroupHierarchies are the mounted cgroup hierarchies (v1 controllers and the unified one).
func cgroupHierarchies() []string {
	var dirs []string
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		sep := 0
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep > 0 && sep+1 < len(f) && (f[sep+1] == "cgroup" || f[sep+1] == "cgroup2") && strings.HasPrefix(f[4], "/sys/fs/cgroup") {
			dirs = append(dirs, f[4])
		}
	}
	return dirs
}

// setupCgroups makes the kubelet's cgroup root in every hierarchy: the kubelet checks that it
// exists, and keeps its pods under it.
func (c *cluster) setupCgroups() error {
	for _, h := range cgroupHierarchies() {
		if err := os.Mkdir(filepath.Join(h, c.cgroup), 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("cgroup root: %w", err)
		}
	}
	return nil
}

// removeCgroups removes the cgroup root's tree, deepest first, in every hierarchy.
func (c *cluster) removeCgroups() {
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, c.cgroup)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				c.t.Logf("cgroup %s left: %v", dirs[i], err)
			}
		}
	}
}

// writeSecrets writes the service account key, the admin token and the kubeconfig.
func (c *cluster) writeSecrets() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(c.path("pki", "sa.key"), pemKey, 0o600); err != nil {
		return err
	}
	token := randHex(16)
	if err := os.WriteFile(c.path("pki", "tokens.csv"), []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	// The apiserver's certificate is self-signed (--cert-dir): nothing but this node talks to it,
	// over its loopback.
	c.kubeconfig = c.path("kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, apiServer, token)
	return os.WriteFile(c.kubeconfig, []byte(kc), 0o600)
}

// start starts a daemon on the node.
func (c *cluster) start(name string, args ...string) (*proc, error) {
	p := &proc{name: name, log: c.path("logs", name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(c.d.nsenter, c.nodeArgs(args...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = []string{"PATH=" + filepath.Join(c.d.cache, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + c.dir}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
	c.procs[name] = p
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tail is the end of the daemon's log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM to the daemon's process group, SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitFor polls ok until it returns nil, the daemon p (if any) dies, or timeout passes.
func waitFor(what string, timeout time.Duration, p *proc, ok func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ok()
		if err == nil {
			return nil
		}
		if p != nil && !p.running() {
			return fmt.Errorf("%s: %s exited: %v\n%s", what, p.name, err, p.tail(40))
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s: not after %v: %v", what, timeout, err)
			if p != nil {
				msg += "\n" + p.tail(40)
			}
			return errors.New(msg)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// crictl runs crictl against the node's containerd.
func (c *cluster) crictl(args ...string) (string, error) {
	return c.nodeRun(60*time.Second, append([]string{c.d.bin["crictl"], "--runtime-endpoint", "unix://" + containerdSock,
		"--image-endpoint", "unix://" + containerdSock, "--timeout", "30s"}, args...)...)
}

func (c *cluster) startContainerd() error {
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "bhkube", "plugins": [{"type": "bridge", "bridge": %q,
  "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "dataDir": %q}}]}
`, bridge, subnet, gateway, c.path("cni", "ipam"))
	if err := os.WriteFile(c.path("cni", "net.d", "10-bhkube.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 3
root = '%[1]s/containerd/root'
state = '%[1]s/containerd/state'
temp = '%[1]s/containerd/tmp'
[grpc]
  address = '%[2]s'
[ttrpc]
  address = '%[2]s.ttrpc'
[debug]
  level = 'debug'
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '%[3]s'
  [plugins.'io.containerd.cri.v1.runtime']
    # The kubelet asks for negative scores (node-critical pods) that this machine refuses.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = %[8]t
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '%[4]s'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '%[5]s'
          Root = '%[1]s/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['%[6]s']
      conf_dir = '%[1]s/cni/net.d'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
  [plugins.'io.containerd.internal.v1.opt']
    path = '%[1]s/containerd/opt'
  [plugins.'io.containerd.nri.v1.nri']
    disable = false
    socket_path = '%[7]s'
    plugin_path = '%[1]s/nri/plugins'
    plugin_config_path = '%[1]s/nri/conf.d'
`, c.dir, containerdSock, c.d.pauseImage, c.d.bin["containerd-shim-runc-v2"], c.d.bin["runc"], c.d.cni, nriSock, c.netnsUnderState)
	if err := os.WriteFile(c.path("containerd.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := c.start("containerd", c.d.bin["containerd"], "--config", c.path("containerd.toml"))
	if err != nil {
		return err
	}
	if err := waitFor("containerd's CRI", 90*time.Second, p, func() error {
		_, err := c.crictl("info")
		return err
	}); err != nil {
		return err
	}
	for _, a := range []string{c.d.pauseTar, c.d.busyboxTar} {
		if out, err := c.ctr("images", "import", "--local", a); err != nil {
			return fmt.Errorf("import %s: %v\n%s", a, err, out)
		}
	}
	return nil
}

func (c *cluster) ctr(args ...string) (string, error) {
	return c.nodeRun(2*time.Minute, append([]string{c.d.bin["ctr"], "--address", containerdSock, "--namespace", "k8s.io"}, args...)...)
}

// containerdLog is containerd's log so far.
func (c *cluster) containerdLog() string {
	b, _ := os.ReadFile(c.path("logs", "containerd.log"))
	return string(b)
}

// startServers starts the node's proxy (tinyproxy) and an HTTP server on the gateway.
func (c *cluster) startServers() error {
	var l net.Listener
	if err := c.netns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf("%s:%d", gateway, httpPort))
		return err
	}); err != nil {
		return err
	}
	c.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, httpBody) }),
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.http.Serve(l) }()
	conf := fmt.Sprintf("Port %d\nListen %s\nTimeout 30\nMaxClients 32\nLogLevel Info\nDisableViaHeader Yes\nAllow %s\nAllow 127.0.0.1\n",
		proxyPort, gateway, subnet)
	if err := os.WriteFile(c.path("tinyproxy.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := c.start("tinyproxy", c.d.tinyproxy, "-d", "-c", c.path("tinyproxy.conf"))
	if err != nil {
		return err
	}
	return waitFor("tinyproxy", 20*time.Second, p, func() error {
		r := testnet.RunProbe(c.netns, testnet.Probe{Kind: testnet.ProbeTCP, Addr: fmt.Sprintf("%s:%d", gateway, proxyPort), Timeout: time.Second})
		return r.Err
	})
}

// kubectl runs kubectl against the cluster, from the node's network namespace.
func (c *cluster) kubectl(args ...string) (string, error) {
	return run(2*time.Minute, c.d.nsenter, append([]string{"--net=" + c.netns.Path, "--", c.d.bin["kubectl"], "--kubeconfig", c.kubeconfig}, args...)...)
}

// helm runs helm against the cluster, with its caches in the test's directory.
func (c *cluster) helm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.d.nsenter, append([]string{"--net=" + c.netns.Path, "--", c.d.bin["helm"], "--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+c.path("helm", "cache"), "HELM_CONFIG_HOME="+c.path("helm", "config"),
		"HELM_DATA_HOME="+c.path("helm", "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (c *cluster) startControlPlane() error {
	etcd, err := c.start("etcd", c.d.bin["etcd"], "--name", "node", "--data-dir", c.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "node=http://127.0.0.1:2380", "--unsafe-no-fsync")
	if err != nil {
		return err
	}
	if err := waitFor("etcd", 60*time.Second, etcd, func() error {
		r := testnet.RunProbe(c.netns, testnet.Probe{Kind: testnet.ProbeTCP, Addr: "127.0.0.1:2379", Timeout: time.Second})
		return r.Err
	}); err != nil {
		return err
	}
	api, err := c.start("kube-apiserver", c.d.bin["kube-apiserver"],
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=127.0.0.1", "--secure-port=6443", "--advertise-address="+gateway,
		"--cert-dir="+c.path("pki", "apiserver"),
		"--token-auth-file="+c.path("pki", "tokens.csv"),
		"--authorization-mode=AlwaysAllow",
		"--allow-privileged=true",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+c.path("pki", "sa.key"),
		"--service-account-signing-key-file="+c.path("pki", "sa.key"),
		"--service-cluster-ip-range="+serviceRange,
		// No pod of this node mounts a service account token.
		"--disable-admission-plugins=ServiceAccount",
	)
	if err != nil {
		return err
	}
	if err := waitFor("kube-apiserver /readyz", 4*time.Minute, api, func() error {
		_, err := c.kubectl("get", "--raw", "/readyz")
		return err
	}); err != nil {
		return err
	}
	// The DaemonSet controller makes the chart's pods, the garbage collector removes them
	// at helm uninstall, the scheduler places them.
	if _, err := c.start("kube-controller-manager", c.d.bin["kube-controller-manager"], "--kubeconfig="+c.kubeconfig,
		"--leader-elect=false", "--controllers=daemonset-controller,garbage-collector-controller,serviceaccount-controller",
		"--secure-port=0", "--use-service-account-credentials=false"); err != nil {
		return err
	}
	_, err = c.start("kube-scheduler", c.d.bin["kube-scheduler"], "--kubeconfig="+c.kubeconfig, "--leader-elect=false", "--secure-port=0")
	return err
}

func (c *cluster) startKubelet() error {
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
containerRuntimeEndpoint: unix://%[2]s
imageServiceEndpoint: unix://%[2]s
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
resolvConf: ""
podLogsDir: %[3]s/pod-logs
evictionHard: {"memory.available": "0%%", "nodefs.available": "0%%", "nodefs.inodesFree": "0%%", "imagefs.available": "0%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`, c.cgroup, containerdSock, c.dir)
	if err := os.WriteFile(c.path("kubelet.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := c.start("kubelet", c.d.bin["kubelet"], "--config="+c.path("kubelet.yaml"), "--kubeconfig="+c.kubeconfig,
		"--root-dir="+c.path("kubelet"), "--hostname-override="+nodeName, "--node-ip="+gateway, "--v=2")
	if err != nil {
		return err
	}
	return waitFor("node "+nodeName+" Ready", 4*time.Minute, p, func() error {
		out, err := c.kubectl("get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("Ready is %q", out)
		}
		return nil
	})
}

// importHookImage builds the DaemonSets' image from the binaries TestMain built, as
// install/Containerfile does (the binaries at /, nothing else, /bypass-hook the entrypoint):
// a tar imported with podman into a store of the test's, saved and imported into containerd.
func (c *cluster) importHookImage() error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, b := range []string{"bypass-hook", "bypass-hook-oci", "bypass-hook-runtime"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(hookBin), b))
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: b, Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("image.tar"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	podman := []string{"--root", c.path("podman", "root"), "--runroot", c.path("podman", "run"), "--storage-driver", "vfs"}
	if out, err := run(3*time.Minute, c.d.podman, append(podman, "import", "-q", "--change", `ENTRYPOINT ["/bypass-hook"]`,
		c.path("image.tar"), hookImage)...); err != nil {
		return fmt.Errorf("podman import: %v\n%s", err, out)
	}
	if out, err := run(3*time.Minute, c.d.podman, append(podman, "save", "-q", "--format", "oci-archive", "-o", c.path("image.oci.tar"), hookImage)...); err != nil {
		return fmt.Errorf("podman save: %v\n%s", err, out)
	}
	_, _ = run(time.Minute, c.d.podman, append(podman, "rmi", "-a", "-f")...)
	if out, err := c.ctr("images", "import", "--local", c.path("image.oci.tar")); err != nil {
		return fmt.Errorf("import the image into containerd: %v\n%s", err, out)
	}
	return nil
}

// close stops everything the cluster started and removes what it made.
func (c *cluster) close() {
	t := c.t
	for _, name := range []string{"kubelet", "kube-scheduler", "kube-controller-manager"} {
		if p := c.procs[name]; p != nil {
			p.stop(10 * time.Second)
		}
	}
	if p := c.procs["containerd"]; p != nil && p.running() {
		if out, err := c.crictl("rmp", "--all", "--force"); err != nil {
			t.Logf("removing the pods: %v\n%s", err, out)
		}
		p.stop(15 * time.Second)
	}
	for _, name := range []string{"kube-apiserver", "etcd", "tinyproxy"} {
		if p := c.procs[name]; p != nil {
			p.stop(10 * time.Second)
		}
	}
	if c.http != nil {
		_ = c.http.Close()
	}
	// What is left in the node's mount namespace (shims, containers the removal missed, the
	// holder) goes with it; nothing else shares it. The namespace is pinned while we look,
	// so that its number, which the kernel gives to the next namespace once this one ends,
	// names it alone.
	if c.mntNS != nil {
		for i := 0; i < 50 && c.mntNS.killMountProcs() > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.mntNS.Close()
	}
	if c.holder != nil {
		_ = c.holder.Process.Kill() // if it never got pinned
		_ = c.holder.Wait()
	}
	c.removeCgroups()
	if _, err := run(10*time.Second, c.d.ip, "netns", "del", c.netnsName); err != nil {
		t.Logf("netns: %v", err)
	}
	if t.Failed() {
		for _, name := range []string{"kubelet", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			if p := c.procs[name]; p != nil {
				t.Logf("--- %s (last lines) ---\n%s", name, p.tail(30))
			}
		}
		if os.Getenv(envKeep) == "1" {
			t.Logf("kept %s", c.dir)
			return
		}
	}
	// Pods' files were made in the node's mount namespace; its mounts are gone with it.
	if err := os.RemoveAll(c.dir); err != nil {
		t.Logf("removing %s: %v", c.dir, err)
	}
}

// podPID is the host pid of a pod's sandbox (its pause process), from containerd.
func (c *cluster) podPID(namespace, name string) (int, error) {
	out, err := c.crictl("pods", "--namespace", namespace, "--name", "^"+regexp.QuoteMeta(name)+"$", "--state", "ready", "-q")
	if err != nil {
		return 0, err
	}
	ids := strings.Fields(out)
	if len(ids) != 1 {
		return 0, fmt.Errorf("pod %s/%s: %d ready sandboxes", namespace, name, len(ids))
	}
	out, err = c.crictl("inspectp", "-o", "json", ids[0])
	if err != nil {
		return 0, err
	}
	var v struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Info.Pid == 0 {
		return 0, fmt.Errorf("pod %s/%s: no pid in crictl inspectp: %v", namespace, name, err)
	}
	return v.Info.Pid, nil
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
