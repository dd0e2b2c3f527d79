// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BundleOpts shapes a bundle's config.json.
type BundleOpts struct {
	NetnsPath    string   // network namespace to join; "" lets runc make a new one
	Args         []string // the process; default: sleep 1000
	Env          []string // added after PATH=/bin:/sbin:/usr/bin:/usr/sbin
	Hooks        *specs.Hooks
	Annotations  map[string]string
	Capabilities []string // all capability sets; nil: runc spec's default (AUDIT_WRITE, KILL, NET_BIND_SERVICE)
}

// Bundle is an OCI bundle in a temp dir with a busybox rootfs, run by runc
// with a private state dir.
type Bundle struct {
	Dir     string // the bundle: config.json, rootfs/, output.log
	Root    string // runc --root
	Spec    *specs.Spec
	ID      string // set by Create
	runc    string
	cleanup bool // Create registered the delete at cleanup
}

var defaultCaps = []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

// NewBundle writes a bundle: rootfs from the static busybox (applet symlinks,
// /etc/passwd with root, nobody and uid 1337 "sidecar") and a config.json
// modelled on `runc spec`, with a read-only root and a tmpfs /tmp.
func NewBundle(t testing.TB, o BundleOpts) *Bundle {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "runc", "busybox")
	runc, _ := Tool("runc")
	bb, _ := Tool("busybox")
	dir := t.TempDir()
	b := &Bundle{Dir: dir, Root: filepath.Join(dir, "runc-root"), runc: runc}
	if err := makeRootfs(filepath.Join(dir, "rootfs"), bb); err != nil {
		t.Fatalf("testnet: bundle rootfs: %v", err)
	}
	b.Spec = bundleSpec(o)
	b.WriteSpec(t)
	return b
}

func makeRootfs(root, busybox string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(root, "bin/busybox")); err != nil {
		return err
	}
	list, err := run("", busybox, "--list-full")
	if err != nil {
		return err
	}
	for _, p := range strings.Fields(list) {
		if p == "bin/busybox" {
			continue
		}
		if err := os.Symlink("/bin/busybox", filepath.Join(root, p)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nsidecar:x:1337:1337:sidecar:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nsidecar:x:1337:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func bundleSpec(o BundleOpts) *specs.Spec {
	args := o.Args
	if len(args) == 0 {
		args = []string{"sleep", "1000"}
	}
	caps := o.Capabilities
	if caps == nil {
		caps = defaultCaps
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: args,
			Env:  append([]string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}, o.Env...),
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:        &specs.Root{Path: "rootfs", Readonly: true},
		Hostname:    "bh",
		Hooks:       o.Hooks,
		Annotations: o.Annotations,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: o.NetnsPath},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
				"/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// WriteSpec writes b.Spec to config.json, for tests that change it after
// NewBundle.
func (b *Bundle) WriteSpec(t testing.TB) {
	t.Helper()
	data, err := json.MarshalIndent(b.Spec, "", "\t")
	if err == nil {
		err = os.WriteFile(filepath.Join(b.Dir, "config.json"), data, 0o644)
	}
	if err != nil {
		t.Fatalf("testnet: writing %s/config.json: %v", b.Dir, err)
	}
}

// Runc runs `runc --root b.Root args...` and returns the combined output.
func (b *Bundle) Runc(args ...string) (string, error) {
	return run("", b.runc, append([]string{"--root", b.Root}, args...)...)
}

// Create runs `runc create` (hooks up to createContainer run here). The
// container's stdout and stderr go to Output(). The container is deleted at
// cleanup whatever happens. id should be unique (RandName): the hook's records
// and log prefixes use it.
func (b *Bundle) Create(t testing.TB, id string) error {
	t.Helper()
	b.ID = id
	// A cgroup of its own, so equal ids of concurrent test runs do not meet in
	// the machine's cgroup tree.
	b.Spec.Linux.CgroupsPath = "/" + RandName(id+"-")
	b.WriteSpec(t)
	if !b.cleanup {
		b.cleanup = true
		t.Cleanup(func() {
			if out, err := b.Runc("delete", "-f", b.ID); err != nil && !strings.Contains(out, "does not exist") {
				t.Errorf("testnet: cleanup of container %s: %v", b.ID, err)
			}
		})
	}
	out, err := os.OpenFile(filepath.Join(b.Dir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	defer out.Close()
	// The container inherits runc's stdio: a file, not a pipe, or runc's
	// caller would wait for the container to close it.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.runc, "--root", b.Root, "create", "--bundle", b.Dir, id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testnet: runc create %s: %w: %s", id, err, b.Output())
	}
	return nil
}

// Start runs `runc start` (startContainer and poststart hooks run here).
func (b *Bundle) Start(t testing.TB) error {
	t.Helper()
	_, err := b.Runc("start", b.ID)
	return err
}

// Exec runs args in the running container (runc exec) and returns the
// combined output.
func (b *Bundle) Exec(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return b.Runc(append([]string{"exec", b.ID}, args...)...)
}

// Delete runs `runc delete -f` (poststop hooks run here).
func (b *Bundle) Delete(t testing.TB) error {
	t.Helper()
	_, err := b.Runc("delete", "-f", b.ID)
	return err
}

// State returns `runc state`: status, pid, bundle, annotations.
func (b *Bundle) State(t testing.TB) specs.State {
	t.Helper()
	out, err := b.Runc("state", b.ID)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	var s specs.State
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("testnet: runc state %s: %v: %s", b.ID, err, out)
	}
	return s
}

// Output returns what the container's process wrote to stdout and stderr, and
// runc's own messages from create.
func (b *Bundle) Output() string {
	return readFile(filepath.Join(b.Dir, "output.log"))
}
