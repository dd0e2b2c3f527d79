// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/manifest"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// `make image` builds the DaemonSets' image from this host's binaries with
// nothing to pull (no registry is reachable here), and the manifest's init
// steps run in it as they are written: bypass-hook subcommands through the
// entrypoint, the image having no shell.
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: it builds the binaries and an image")
	}
	testnet.RequireRoot(t)
	for _, tool := range []string{"make", "go", "podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("BYPASS_HOOK_E2E_REQUIRE") != "" {
				t.Fatalf("%s is not installed (.ci/run installs it)", tool)
			}
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	dir := t.TempDir()
	runc, _ := exec.LookPath("runc")
	// A podman store of the test's own, not the host's.
	engine := []string{"podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
		"--events-backend", "none", "--runtime", runc}
	podman := func(args ...string) (string, error) {
		t.Helper()
		out, err := exec.Command(engine[0], append(engine[1:], args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		podman("rm", "--all", "--force", "--time", "0")
		podman("rmi", "--all", "--force")
		mounts, _ := os.ReadFile("/proc/self/mounts")
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir) {
				exec.Command("umount", "-l", f[1]).Run()
			}
		}
	})

	const image = "localhost/bypass-hook:image-test"
	bins := filepath.Join(dir, "bin")
	cmd := exec.Command("make", "-C", "..", "--no-print-directory", "image", "IMAGE="+image, "VERSION=image-test",
		"CONTAINER_ENGINE="+strings.Join(engine, " "), "IMAGE_CONTEXT="+filepath.Join(dir, "context"),
		"BIN="+filepath.Join(bins, "bypass-hook"), "HOOKBIN="+filepath.Join(bins, "bypass-hook-oci"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	out, err := podman("image", "inspect", "--format", "{{json .Config.Entrypoint}} {{index .Labels \"org.opencontainers.image.version\"}} {{len .RootFS.Layers}}", image)
	if err != nil || strings.TrimSpace(out) != `["/bypass-hook"] image-test 1` {
		t.Errorf("the image: %q, %v; want the entrypoint /bypass-hook, the version label and one layer", out, err)
	}

	// Every run as the kubelet would: no network, the limits runc may set.
	run := func(extra []string, args ...string) (string, error) {
		t.Helper()
		base := []string{"run", "--rm", "--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"}
		return podman(append(append(base, extra...), append([]string{image}, args...)...)...)
	}
	if out, err := run(nil, "version"); err != nil || !strings.Contains(out, "image-test") {
		t.Errorf("bypass-hook version in the image: %v\n%s", err, out)
	}
	if out, err := run([]string{"--entrypoint", "/bin/sh"}, "-c", "true"); err == nil {
		t.Errorf("the image has a shell: %s", out)
	}

	// The manifest's init steps, with its arguments, security context and
	// mount points, each host path a directory of the test's.
	ds, _, err := manifest.Kubernetes("kubernetes/bypass-hook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	configMap := filepath.Join(dir, "config-map")
	os.MkdirAll(configMap, 0o755)
	os.WriteFile(filepath.Join(configMap, "config.yaml"), []byte("proxies: ['198.51.100.1:3128']\n"), 0o644)
	host := map[string]string{}
	for _, c := range ds.Spec.Template.Spec.InitContainers {
		if len(c.Command) > 0 {
			t.Errorf("%s runs %q, not the image's entrypoint", c.Name, c.Command)
		}
		extra := []string{"--user", "0", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}
		for _, m := range c.VolumeMounts {
			src := configMap
			if m.Name != "config-map" {
				src = filepath.Join(dir, "node", m.Name)
				os.MkdirAll(src, 0o755)
			}
			host[m.MountPath] = src
			extra = append(extra, "-v", src+":"+m.MountPath)
		}
		if out, err := run(extra, c.Args...); err != nil {
			t.Errorf("init step %s (%q) in the image: %v\n%s", c.Name, c.Args, err, out)
		}
	}
	for _, path := range []string{
		filepath.Join(host["/opt/bypass-hook/bin"], "bypass-hook-oci"),
		filepath.Join(host["/etc/bypass-hook"], "config.yaml"),
		filepath.Join(host["/run"], "bypass-hook"),
	} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the init steps did not make %s: %v", path, err)
		}
	}
	// The hook binary the image put on the "node" runs there.
	if out, err := exec.Command(filepath.Join(host["/opt/bypass-hook/bin"], "bypass-hook-oci"), "--version").CombinedOutput(); err != nil {
		t.Errorf("the copied hook binary: %v\n%s", err, out)
	}
}
