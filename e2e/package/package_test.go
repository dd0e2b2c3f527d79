// SPDX-License-Identifier: Apache-2.0

// Package packagetest installs the .deb that `make package` builds into a
// fresh Debian root, as a new user would on a fresh machine, and takes it out
// again: install, the commands an operator runs first, a change of config
// written again by dpkg-reconfigure, a reinstall that keeps the config,
// remove, and purge, after which nothing of the package is left.
//
// The root comes from debootstrap (scripts/debian-root.sh, cached as a
// tarball under $BYPASS_HOOK_E2E_CACHE/debootstrap and unpacked per run).
// Every command in it runs under chroot in a mount and network namespace of
// its own: the maintainer scripts see no systemd and no host sysctl, and
// nothing they do reaches the host. The tests need root, debootstrap, unshare
// and chroot; they skip without them, or fail with BYPASS_HOOK_E2E_REQUIRE=1.
package packagetest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, nil)) }

const repo = "../.."

// requireHost skips the test, or fails it under BYPASS_HOOK_E2E_REQUIRE=1,
// unless it runs as root with the tools it needs.
func requireHost(t *testing.T) {
	t.Helper()
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "needs root (debootstrap, chroot, namespaces)")
	}
	for _, tool := range []string{"debootstrap", "unshare", "chroot", "make", "go", "tar", "dpkg-deb"} {
		if _, err := testnet.Tool(tool); err != nil {
			problems = append(problems, tool+" is not installed")
		}
	}
	if len(problems) > 0 {
		msg := "e2e/package: " + strings.Join(problems, "; ")
		if os.Getenv("BYPASS_HOOK_E2E_REQUIRE") == "1" {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
}

// buildDeb runs `make package` into a directory of the test's and returns
// the .deb's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	dist := t.TempDir()
	cmd := exec.Command("make", "-C", repo, "--no-print-directory", "package",
		"DIST="+dist, "PKG_STAGE="+filepath.Join(t.TempDir(), "stage"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "bypass-hook_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "bypass-hook-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package made %q and %q, want one .deb and one .rpm\n%s", debs, rpms, out)
	}
	return debs[0]
}

// debianRoot is a fresh Debian root directory.
type debianRoot struct {
	t   *testing.T
	dir string
}

func newDebianRoot(t *testing.T) *debianRoot {
	t.Helper()
	out, err := exec.Command(filepath.Join(repo, "scripts/debian-root.sh")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("scripts/debian-root.sh: %v\n%s", err, stderr)
	}
	tarball := strings.TrimSpace(string(out))
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", dir, "--numeric-owner", "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", tarball, err, out)
	}
	t.Logf("Debian root from %s", tarball)
	return &debianRoot{t: t, dir: dir}
}

// run runs script with /bin/sh -e in the root, in a mount and network
// namespace of its own with /proc, /sys, /dev and an empty /run, and
// returns its output.
func (r *debianRoot) run(script string) (string, error) {
	const setup = `set -e
mount -t proc proc "$1/proc"
mount -t sysfs -o ro sysfs "$1/sys"
mount --rbind /dev "$1/dev"
mount -t tmpfs -o mode=0755 tmpfs "$1/run"
exec chroot "$1" /bin/sh -ec "$2"`
	cmd := exec.Command("unshare", "--mount", "--net", "--", "/bin/sh", "-c", setup, "sh", r.dir, script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *debianRoot) mustRun(script string) string {
	r.t.Helper()
	out, err := r.run(script)
	if err != nil {
		r.t.Fatalf("in the Debian root: %s: %v\n%s", script, err, out)
	}
	r.t.Logf("$ %s\n%s", script, strings.TrimSpace(out))
	return out
}

func (r *debianRoot) path(p string) string { return filepath.Join(r.dir, p) }

func (r *debianRoot) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}

func (r *debianRoot) read(p string) []byte {
	r.t.Helper()
	data, err := os.ReadFile(r.path(p))
	if err != nil {
		r.t.Fatal(err)
	}
	return data
}

// The state of the tools that install and remove packages, which they keep
// by design (dpkg's database and logs, apt's caches, logrotate's record of
// when it rotated), and the mount points.
var toolState = []string{
	"proc/", "sys/", "dev/", "run/", "tmp/",
	"var/lib/dpkg/", "var/log/dpkg.log", "var/log/apt/", "var/log/alternatives.log",
	"var/lib/apt/", "var/cache/apt/", "var/cache/debconf/", "var/cache/ldconfig/",
	"var/lib/logrotate/",
}

// files lists every path in the root but the tools' state.
func (r *debianRoot) files() []string {
	r.t.Helper()
	var paths []string
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		if d.IsDir() {
			rel += "/"
		}
		for _, s := range toolState {
			if rel == s || strings.HasPrefix(rel, s) {
				if d.IsDir() && rel == s {
					return filepath.SkipDir
				}
				return nil
			}
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return paths
}

// hookBinary is the packaged binary that runs as the hook: the lean one,
// where the package has one, else the CLI.
func (r *debianRoot) hookBinary() string {
	if r.exists("usr/bin/bypass-hook-oci") {
		return "/usr/bin/bypass-hook-oci"
	}
	return "/usr/bin/bypass-hook"
}

// cdiSpec is the CDI spec that `bypass-hook install cdi` writes for the
// packaged hook binary.
func (r *debianRoot) cdiSpec() []byte {
	r.t.Helper()
	want, err := install.MarshalCDISpec(install.NewCDISpec(install.Registration{Binary: r.hookBinary()}))
	if err != nil {
		r.t.Fatal(err)
	}
	return want
}

// hooksDirFile is the registration that `bypass-hook install hooks-dir`
// writes for the packaged binary that runs as the hook.
func (r *debianRoot) hooksDirFile(selection string) []byte {
	t := r.t
	t.Helper()
	want, err := install.NewHooksDirEntry(install.Registration{Binary: r.hookBinary()}, selection).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// The life of the package on a fresh Debian 12: install, use, reconfigure,
// reinstall, remove, purge.
func TestDebInFreshDebian(t *testing.T) {
	requireHost(t)
	deb := buildDeb(t)
	r := newDebianRoot(t)
	before := r.files()

	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	debName := filepath.Base(deb)
	if err := os.WriteFile(r.path("tmp/"+debName), data, 0o644); err != nil {
		t.Fatal(err)
	}

	const (
		hooksFile = "usr/share/containers/oci/hooks.d/" + install.HooksDirFileName
		cfgFile   = "etc/bypass-hook/config.yaml"
		logFile   = "var/log/bypass-hook.log"
	)
	cdiFile := "etc/cdi/" + install.CDIFileName
	units := []string{"bypass-hook-nri.service", "bypass-hook-monitor.service"}

	// Install as the README says. The root has every package the .deb
	// recommends, so apt needs no mirror.
	out := r.mustRun("cd /tmp && apt-get install -y ./" + debName)
	if !strings.Contains(out, "in a chroot: not applying") {
		t.Errorf("the postinst did not say it leaves the sysctl to the boot in a chroot:\n%s", out)
	}
	if !strings.Contains(out, "bypass-hook check") {
		t.Errorf("the postinst did not tell the next step:\n%s", out)
	}
	// With proxies named, the package fences every podman and CRI-O
	// container: the postinst says so, and how to start with a few.
	for _, want := range []string{"EVERY podman and CRI-O container", "`selection: all`", "`selection: annotated`",
		"bypass-hook install hooks-dir", "bypass-hook.io/enabled=true",
		"bypass-hook: /etc/bypass-hook/config.yaml (the default path): valid; no proxies: it fences nothing"} {
		if !strings.Contains(out, want) {
			t.Errorf("the postinst does not say %q:\n%s", want, out)
		}
	}
	example, err := os.ReadFile(filepath.Join(repo, "install/config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.read(cfgFile); !bytes.Equal(got, example) {
		t.Errorf("%s is not install/config.example.yaml:\n%s", cfgFile, got)
	}
	// Every binary `make build` makes: the CLI, the hook, the runtime wrapper.
	for _, b := range []string{"usr/bin/bypass-hook", "usr/bin/bypass-hook-oci", "usr/bin/bypass-hook-runtime"} {
		if !r.exists(b) {
			t.Errorf("the package did not install %s", b)
		}
	}
	conffiles := r.read("var/lib/dpkg/info/bypass-hook.conffiles")
	for _, c := range []string{"/" + cfgFile, "/etc/logrotate.d/bypass-hook"} {
		if !slices.Contains(strings.Fields(string(conffiles)), c) {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}
	if got := r.read(hooksFile); !bytes.Equal(got, r.hooksDirFile(config.SelectAll)) {
		t.Errorf("the postinst's %s:\n%s\nwant:\n%s", hooksFile, got, r.hooksDirFile(config.SelectAll))
	}
	// The CDI spec, as `bypass-hook install cdi` writes it for the binary.
	if got, want := r.read(cdiFile), r.cdiSpec(); !bytes.Equal(got, want) {
		t.Errorf("the postinst's %s:\n%s\nwant:\n%s", cdiFile, got, want)
	}
	for _, u := range units {
		unit := string(r.read("usr/lib/systemd/system/" + u))
		if !strings.Contains(unit, "\nExecStart=/usr/bin/bypass-hook ") {
			t.Errorf("%s does not run the packaged binary:\n%s", u, unit)
		}
	}

	// What an operator runs first. check runs its self-test in a namespace
	// of its own inside this test's; as shipped, the config names no
	// proxies, so the verdict is that this node cannot fence yet.
	r.mustRun("bypass-hook --version")
	r.mustRun("bypass-hook config validate /" + cfgFile)
	out, err = r.run("bypass-hook check")
	t.Logf("$ bypass-hook check (the config as shipped)\n%s", out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "VERDICT: this node CANNOT fence") {
		t.Errorf("bypass-hook check with no proxies: %v, want exit 1 and the verdict that it cannot fence", err)
	}
	// systemd-analyze verify checks the units as installed (it warns about
	// containerd.service, which is not installed here).
	out, err = r.run("systemd-analyze verify " + strings.Join(units, " "))
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" && !strings.Contains(line, "containerd.service") {
			t.Errorf("systemd-analyze verify: %v: %s", err, line)
		}
	}
	r.mustRun("systemctl enable " + strings.Join(units, " "))

	// logrotate rotates the hook's log with the packaged file.
	r.mustRun("echo '{\"msg\":\"a line of the hook\"}' >> /" + logFile + " && logrotate -f /etc/logrotate.d/bypass-hook")
	if !r.exists(logFile+".1") || !r.exists(logFile) {
		t.Errorf("logrotate did not rotate %s (copytruncate keeps the file, adds .1)", logFile)
	}

	// The registration follows the config: after a change, dpkg-reconfigure
	// writes it again; a reinstall (an upgrade's path) keeps the operator's
	// config and writes the registration from it.
	// The operator uncomments a proxy, as the example says, and selects
	// annotated containers.
	edited := bytes.Replace(example, []byte("\n#  - 198.51.100.1:3128\n"), []byte("\n  - 198.51.100.1:3128\n"), 1)
	edited = bytes.Replace(edited, []byte("\nselection: all "), []byte("\nselection: annotated "), 1)
	if bytes.Count(edited, []byte("\n")) != bytes.Count(example, []byte("\n")) || bytes.Equal(edited, example) ||
		!bytes.Contains(edited, []byte("selection: annotated")) || !bytes.Contains(edited, []byte("\n  - 198.51.100.1:3128")) {
		t.Fatal("the example config has no commented proxy 198.51.100.1:3128 or no `selection: all` line to edit")
	}
	if err := os.WriteFile(r.path(cfgFile), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = r.run("bypass-hook check")
	t.Logf("$ bypass-hook check (a proxy set)\n%s", out)
	if err != nil || !strings.Contains(out, "VERDICT: this node can fence") {
		t.Errorf("bypass-hook check with a proxy: %v, want exit 0 and the verdict that it can fence", err)
	}
	r.mustRun("dpkg-reconfigure bypass-hook")
	if got := r.read(hooksFile); !bytes.Equal(got, r.hooksDirFile(config.SelectAnnotated)) {
		t.Errorf("after selection: annotated and dpkg-reconfigure, %s:\n%s", hooksFile, got)
	}
	r.mustRun("cd /tmp && apt-get install -y --reinstall ./" + debName)
	if got := r.read(cfgFile); !bytes.Equal(got, edited) {
		t.Errorf("the reinstall changed the operator's config:\n%s", got)
	}
	if got := r.read(hooksFile); !bytes.Equal(got, r.hooksDirFile(config.SelectAnnotated)) {
		t.Errorf("after the reinstall, %s:\n%s", hooksFile, got)
	}

	// Remove: the program, its units and registrations go; the conffiles
	// and the log stay (Debian policy), and so does nothing that points at
	// the binary that is gone.
	r.mustRun("apt-get remove -y bypass-hook")
	for _, gone := range []string{"usr/bin/bypass-hook", "usr/bin/bypass-hook-runtime", hooksFile, cdiFile, "usr/lib/systemd/system/" + units[0], "usr/lib/systemd/system/" + units[1],
		"etc/systemd/system/multi-user.target.wants/" + units[0], "etc/systemd/system/multi-user.target.wants/" + units[1]} {
		if r.exists(gone) {
			t.Errorf("after remove, %s is still there", gone)
		}
	}
	for _, kept := range []string{cfgFile, "etc/logrotate.d/bypass-hook", logFile} {
		if !r.exists(kept) {
			t.Errorf("remove took %s, which only purge may take", kept)
		}
	}
	if got := r.read(cfgFile); !bytes.Equal(got, edited) {
		t.Errorf("remove changed the config:\n%s", got)
	}

	// Purge: nothing of the package is left.
	r.mustRun("apt-get purge -y bypass-hook")
	added, removed := diffPaths(before, r.files())
	if len(added) > 0 || len(removed) > 0 {
		t.Errorf("after purge, the root differs from before the install:\nleft: %q\nmissing: %q", added, removed)
	}
	if out, _ := r.run("dpkg-query -W -f '${Status}' bypass-hook"); !strings.Contains(out, "not-installed") && !strings.Contains(out, "no packages found") {
		t.Errorf("dpkg still knows the package after purge: %s", out)
	}
}

// diffPaths returns the paths only in after and those only in before.
func diffPaths(before, after []string) (added, removed []string) {
	in := func(list []string) map[string]bool {
		m := make(map[string]bool, len(list))
		for _, p := range list {
			m[p] = true
		}
		return m
	}
	b, a := in(before), in(after)
	for _, p := range after {
		if !b[p] {
			added = append(added, p)
		}
	}
	for _, p := range before {
		if !a[p] {
			removed = append(removed, p)
		}
	}
	return added, removed
}
