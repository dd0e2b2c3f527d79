// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

const (
	chart       = "../../deploy/helm/bypass-hook"
	manifest    = "../../install/kubernetes/bypass-hook.yaml"
	release     = "bypass-hook"
	dsNamespace = "kube-system"
	appLabel    = "app.kubernetes.io/name=bypass-hook"
)

// The plugin's registration with containerd, as containerd logs it.
var pluginRegistered = regexp.MustCompile(`plugin \\?"[0-9][0-9]-bypass-hook\\?" connected and synchronized`)

// TestHelmChart installs the chart with helm on a real control plane and node: the DaemonSet's
// pod becomes Ready only once the plugin is registered with containerd; an annotated pod is
// fenced (a direct connection refused, the proxy reachable), a plain one is not, and
// `bypass-hook status` on the node names the fenced pod; after helm uninstall the running
// fenced pod stays fenced until it ends.
func TestHelmChart(t *testing.T) {
	c := newCluster(t)

	out, err := c.helm(append([]string{"install", release, chart, "--namespace", dsNamespace}, helmValues...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install:\n%s", out)

	c.requireInstalled(t)

	// helm uninstall: the plugin's pod goes, the running pod keeps its fence until it ends.
	if _, err := c.helm("uninstall", release, "--namespace", dsNamespace, "--wait", "--timeout", "3m"); err != nil {
		t.Fatal(err)
	}
	c.requireUninstalled(t)
}

// requireInstalled waits for the DaemonSet's pod to be Ready, which must come only once the
// plugin is registered with containerd; then an annotated pod is fenced, a plain one is not, and
// `bypass-hook status` on the node names the fenced one.
func (c *cluster) requireInstalled(t *testing.T) {
	t.Helper()
	// Ready only once registered: at the first look that finds the pod Ready, containerd has
	// already logged the plugin's registration.
	var dsPod string
	if err := waitFor("the DaemonSet's pod Ready", 4*time.Minute, c.procs["kubelet"], func() error {
		out, err := c.kubectl("get", "pods", "-n", dsNamespace, "-l", appLabel, "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return err
		}
		f := strings.Fields(out)
		if len(f) != 2 {
			return fmt.Errorf("pods: %q", out)
		}
		registered := pluginRegistered.MatchString(c.containerdLog())
		if f[1] == "True" {
			if !registered {
				t.Errorf("pod %s is Ready but containerd has not logged the plugin's registration", f[0])
			}
			dsPod = f[0]
			return nil
		}
		return fmt.Errorf("pod %s Ready=%q, plugin registered: %v", f[0], f[1], registered)
	}); err != nil {
		desc, _ := c.kubectl("describe", "pods", "-n", dsNamespace)
		t.Fatalf("%v\n%s", err, desc)
	}
	t.Logf("DaemonSet pod %s Ready", dsPod)

	c.runPod(t, "fenced", true)
	c.runPod(t, "plain", false)
	c.requireFenced(t, "fenced")
	c.requireOpen(t, "plain")

	st, err := c.nodeRun(30*time.Second, hookBin, "status", "--namespace", "default")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st, "fenced") || strings.Contains(st, "plain") {
		t.Errorf("bypass-hook status on the node names the pod fenced and not the pod plain:\n%s", st)
	}
	t.Logf("bypass-hook status --namespace default, on the node:\n%s", st)
}

// requireUninstalled waits until the DaemonSet's pod is gone; the fenced pod, still running,
// keeps its fence.
func (c *cluster) requireUninstalled(t *testing.T) {
	t.Helper()
	if err := waitFor("the DaemonSet's pod gone", 3*time.Minute, nil, func() error {
		out, err := c.kubectl("get", "pods", "-n", dsNamespace, "-l", appLabel, "-o", "name")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the uninstall:")
	c.requireFenced(t, "fenced")
	c.requireOpen(t, "plain")
	c.requireOnlyDocumentedLeftovers(t)
}

// leftAfterUninstall is what docs/kubernetes.md ("Uninstall") says stays on a node: the hook
// binary that running pods' poststop hooks name, the config they read, the records of their
// fences, the hook log.
var leftAfterUninstall = regexp.MustCompile(`^(/opt/bypass-hook(/bin(/bypass-hook-oci)?)?|/etc/bypass-hook(/config\.yaml(\.rejected)?)?|/run/bypass-hook(/.*)?|/var/log/bypass-hook\.log)$`)

// requireOnlyDocumentedLeftovers: after helm uninstall, no object of the chart is left in the
// cluster, and on the node nothing of ours but what the docs name.
func (c *cluster) requireOnlyDocumentedLeftovers(t *testing.T) {
	t.Helper()
	out, err := c.kubectl("get", "daemonsets,configmaps,serviceaccounts,services", "--all-namespaces", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range strings.Fields(out) {
		if strings.Contains(obj, "bypass-hook") {
			t.Errorf("after helm uninstall the cluster still has %s", obj)
		}
	}
	// /opt, /run and /var/log are the node's own tmpfs, /etc an overlay whose upper layer holds
	// what the node wrote there. The kubelet's links to the plugin pod's container logs
	// (/var/log/containers/bypass-hook-*) outlive the pod's API object: its container garbage
	// collection, once a minute, removes them. So undocumented paths get that long to go.
	var found string
	var undocumented []string
	start := time.Now()
	err = waitFor("the node's files not named in docs/kubernetes.md gone", 3*time.Minute, nil, func() error {
		var err error
		found, err = c.nodeRun(30*time.Second, "sh", "-c", "find /opt /run /var/log /etc/bypass-hook -path /run/containerd -prune -o -print 2>/dev/null | grep -i bypass")
		if err != nil && strings.TrimSpace(found) != "" {
			return fmt.Errorf("listing the node's files: %v", err)
		}
		undocumented = undocumented[:0]
		for _, path := range strings.Fields(found) {
			if !leftAfterUninstall.MatchString(path) {
				undocumented = append(undocumented, path)
			}
		}
		if len(undocumented) > 0 {
			return fmt.Errorf("still there: %s", strings.Join(undocumented, " "))
		}
		return nil
	})
	for _, path := range undocumented {
		t.Errorf("after helm uninstall the node still has %s, which docs/kubernetes.md does not name", path)
	}
	if err != nil && len(undocumented) == 0 {
		t.Fatal(err)
	}
	t.Logf("left on the node after helm uninstall (undocumented paths gone after %v), as docs/kubernetes.md says:\n%s", time.Since(start).Round(time.Second), found)
}

// helmValues are the chart's values on this node: the image imported into containerd, the
// node's proxy.
var helmValues = []string{
	"--set", "image.repository=" + strings.Split(hookImage, ":")[0], "--set", "image.tag=" + strings.Split(hookImage, ":")[1],
	"--set", "image.pullPolicy=Never",
	"--set", fmt.Sprintf("config.proxies={%s:%d}", gateway, proxyPort),
}

// TestHelmUpgrade: helm upgrade with a bad value fails and leaves the node as it was; with a
// new allow entry, the running fenced pod follows it without a restart, and a container
// restart inside that pod (a new container joining the fenced namespace under the newer
// config) succeeds.
func TestHelmUpgrade(t *testing.T) {
	c := newCluster(t)
	if out, err := c.helm(append([]string{"install", release, chart, "--namespace", dsNamespace}, helmValues...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.requireInstalled(t)
	direct := fmt.Sprintf("%s:%d", gateway, httpPort)

	upgrade := append([]string{"upgrade", release, chart, "--namespace", dsNamespace}, helmValues...)
	if out, err := c.helm(append(upgrade, "--set", "config.selecton=all")...); err == nil {
		t.Errorf("helm upgrade took config.selecton=all:\n%s", out)
	} else {
		t.Logf("helm upgrade with config.selecton refused: %v", err)
	}

	values := c.path("allow.yaml")
	if err := writeFile(values, fmt.Sprintf("config:\n  allow:\n    - cidr: %s/32\n      ports: [%d]\n      protocol: tcp\n", gateway, httpPort)); err != nil {
		t.Fatal(err)
	}
	if out, err := c.helm(append(upgrade, "-f", values, "--wait", "--timeout", "3m")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pid, err := c.podPID("default", "fenced")
	if err != nil {
		t.Fatal(err)
	}
	ns := &testnet.Netns{Name: "fenced", Path: fmt.Sprintf("/proc/%d/ns/net", pid)}
	if err := waitFor("the running fenced pod follows the new allow", 2*time.Minute, nil, func() error {
		return testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeTCP, Addr: direct, Timeout: 2 * time.Second}).Err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("pod fenced: after helm upgrade, a direct connection to %s (now allowed) succeeds, the pod not restarted", direct)

	// A container restart inside the running pod: its new container joins the fenced namespace,
	// whose fence now comes from the newer config.
	ids, err := c.crictl("ps", "--namespace", "default", "--label", "io.kubernetes.pod.name=fenced", "--name", "^main$", "-q")
	if err != nil || len(strings.Fields(ids)) != 1 {
		t.Fatalf("the container of pod fenced: %q, %v", ids, err)
	}
	if out, err := c.crictl("stop", strings.Fields(ids)[0]); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := waitFor("pod fenced restarted its container", 2*time.Minute, nil, func() error {
		out, err := c.kubectl("get", "pod", "fenced", "-n", "default", "-o",
			`jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}`)
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] == "0" || f[1] != "true" {
			return fmt.Errorf("restartCount, ready: %q", out)
		}
		return nil
	}); err != nil {
		desc, _ := c.kubectl("describe", "pod", "fenced", "-n", "default")
		t.Fatalf("%v\n%s", err, desc)
	}
	if p2, err := c.podPID("default", "fenced"); err != nil || p2 != pid {
		t.Errorf("pod fenced: the sandbox changed (pid %d, now %d, %v): the pod was recreated, not its container restarted", pid, p2, err)
	}
	if r := testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeTCP, Addr: direct, Timeout: 5 * time.Second}); r.Err != nil {
		t.Errorf("pod fenced: after the container restart, direct to %s: %v", direct, r.Err)
	}
	if r := testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeHTTPConnect, Proxy: fmt.Sprintf("%s:%d", gateway, proxyPort),
		URL: "http://" + direct + "/", Timeout: 10 * time.Second}); r.Err != nil {
		t.Errorf("pod fenced: after the container restart, through the proxy: %v", r.Err)
	}
	t.Logf("pod fenced: its container restarted and runs")
}

// TestRawManifest applies install/kubernetes/bypass-hook.yaml with kubectl, as its header says
// to: the image named once, at &image, and the node's proxy in the ConfigMap; it must give what
// the chart gives, and kubectl delete what helm uninstall does.
func TestRawManifest(t *testing.T) {
	c := newCluster(t)
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	m := string(b)
	for _, r := range []struct{ old, new string }{
		{"image: &image bypass-hook:latest", "image: &image " + hookImage},
		{"proxies: []", fmt.Sprintf("proxies: [%q]", fmt.Sprintf("%s:%d", gateway, proxyPort))},
	} {
		if strings.Count(m, r.old) != 1 {
			t.Fatalf("%s: want %q once, as its header says", manifest, r.old)
		}
		m = strings.Replace(m, r.old, r.new, 1)
	}
	f := c.path("bypass-hook.yaml")
	if err := writeFile(f, m); err != nil {
		t.Fatal(err)
	}
	if out, err := c.kubectl("apply", "-f", f); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.requireInstalled(t)
	if out, err := c.kubectl("delete", "-f", f, "--wait=true", "--timeout=3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.requireUninstalled(t)
}

// runPod starts a busybox pod in the default namespace, annotated for the hook or not, and
// waits until it runs.
func (c *cluster) runPod(t *testing.T, name string, annotated bool) {
	t.Helper()
	ann := ""
	if annotated {
		ann = `  annotations: {"bypass-hook.io/enabled": "true"}` + "\n"
	}
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
%sspec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
`, name, ann, nodeName, c.d.busyboxImage)
	f := c.path(name + ".yaml")
	if err := writeFile(f, pod); err != nil {
		t.Fatal(err)
	}
	if out, err := c.kubectl("apply", "-f", f); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := c.kubectl("wait", "--for=condition=Ready", "pod/"+name, "-n", "default", "--timeout=120s"); err != nil {
		desc, _ := c.kubectl("describe", "pod", name, "-n", "default")
		t.Fatalf("%v\n%s\n%s", err, out, desc)
	}
}

func (c *cluster) podNetns(t *testing.T, name string) *testnet.Netns {
	t.Helper()
	pid, err := c.podPID("default", name)
	if err != nil {
		t.Fatal(err)
	}
	return &testnet.Netns{Name: name, Path: fmt.Sprintf("/proc/%d/ns/net", pid)}
}

// requireFenced: from the pod, a direct connection to the node's HTTP server is refused at
// once, the same server through the proxy answers.
func (c *cluster) requireFenced(t *testing.T, name string) {
	t.Helper()
	ns := c.podNetns(t, name)
	direct := fmt.Sprintf("%s:%d", gateway, httpPort)
	r := testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeTCP, Addr: direct, Timeout: 5 * time.Second})
	if !errors.Is(r.Err, syscall.ECONNREFUSED) {
		t.Errorf("pod %s: direct connection to %s: want ECONNREFUSED (fenced), got %v", name, direct, r.Err)
	} else {
		t.Logf("pod %s: direct connection to %s refused after %v", name, direct, r.Elapsed)
	}
	r = testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeHTTPConnect, Proxy: fmt.Sprintf("%s:%d", gateway, proxyPort),
		URL: "http://" + direct + "/", Timeout: 10 * time.Second})
	if r.Err != nil || r.Body != httpBody {
		t.Errorf("pod %s: through the proxy: %q, %v", name, r.Body, r.Err)
	} else {
		t.Logf("pod %s: %s through the proxy answered", name, direct)
	}
}

// requireOpen: from the pod, the node's HTTP server answers a direct request.
func (c *cluster) requireOpen(t *testing.T, name string) {
	t.Helper()
	ns := c.podNetns(t, name)
	r := testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeHTTP, URL: fmt.Sprintf("http://%s:%d/", gateway, httpPort), Timeout: 10 * time.Second})
	if r.Err != nil || r.Body != httpBody {
		t.Errorf("pod %s (not annotated): direct request: %q, %v", name, r.Body, r.Err)
	} else {
		t.Logf("pod %s (not annotated): direct request answered", name)
	}
}
