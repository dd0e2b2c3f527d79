// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// TestLateFenceDefaultNetns: on a containerd with its default place for pods' network
// namespaces (/run/netns, no netns_mounts_under_state_dir), an annotated pod that started
// while the plugin was not installed is fenced late once the chart is installed (a direct
// connection refused, the proxy answers), and a pod's namespace made after the plugin's
// container started shows in the plugin's view of /run/netns (what a late fence after a
// reconnection needs).
func TestLateFenceDefaultNetns(t *testing.T) {
	c := newCluster(t, defaultNetns)

	c.runPod(t, "early", true)
	nsPath := c.podNetnsPath(t, "early")
	if !strings.HasPrefix(nsPath, "/var/run/netns/") && !strings.HasPrefix(nsPath, "/run/netns/") {
		t.Fatalf("pod early: containerd put its network namespace at %s, not under /run/netns: the test needs containerd's default", nsPath)
	}
	t.Logf("pod early: network namespace %s", nsPath)
	direct := fmt.Sprintf("%s:%d", gateway, httpPort)
	if r := testnet.RunProbe(c.podNetns(t, "early"), testnet.Probe{Kind: testnet.ProbeTCP, Addr: direct, Timeout: 5 * time.Second}); r.Err != nil {
		t.Fatalf("pod early, before the plugin: direct connection to %s: %v (want it open: nothing fences it yet)", direct, r.Err)
	}

	if out, err := c.helm(append([]string{"install", release, chart, "--namespace", dsNamespace}, helmValues...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.requireInstalled(t)

	// Late fencing runs as the plugin synchronizes, before it is Ready.
	ns := c.podNetns(t, "early")
	r := testnet.RunProbe(ns, testnet.Probe{Kind: testnet.ProbeTCP, Addr: direct, Timeout: 5 * time.Second})
	if !errors.Is(r.Err, syscall.ECONNREFUSED) {
		logs, _ := c.kubectl("logs", "-n", dsNamespace, "-l", appLabel, "-c", "nri-plugin", "--tail", "40")
		t.Errorf("pod early, started before the plugin: direct connection to %s: want ECONNREFUSED (late-fenced), got %v\nthe plugin's log:\n%s", direct, r.Err, logs)
	} else {
		c.requireFenced(t, "early")
	}

	// A namespace made after the plugin's container started (pod fenced, by requireInstalled)
	// is in the plugin's view.
	pid := c.pluginPID(t)
	later := c.podNetnsPath(t, "fenced")
	if err := c.seenByPlugin(pid, later); err != nil {
		t.Errorf("pod fenced's namespace, made after the plugin started: %v", err)
	} else {
		t.Logf("the plugin (pid %d) sees %s, made after it started", pid, later)
	}
}

// podNetnsPath is the path of a pod's network namespace, as containerd reports it.
func (c *cluster) podNetnsPath(t *testing.T, name string) string {
	t.Helper()
	out, err := c.crictl("pods", "--namespace", "default", "--name", "^"+regexp.QuoteMeta(name)+"$", "--state", "ready", "-q")
	if err != nil || len(strings.Fields(out)) != 1 {
		t.Fatalf("pod %s: sandboxes %q, %v", name, out, err)
	}
	out, err = c.crictl("inspectp", "-o", "json", strings.Fields(out)[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	for _, ns := range v.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" {
			return ns.Path
		}
	}
	t.Fatalf("pod %s: no network namespace path in crictl inspectp", name)
	return ""
}

// pluginPID is the host pid of the plugin's container.
func (c *cluster) pluginPID(t *testing.T) int {
	t.Helper()
	out, err := c.crictl("ps", "--namespace", dsNamespace, "--name", "^nri-plugin$", "--state", "running", "-q")
	if err != nil || len(strings.Fields(out)) != 1 {
		t.Fatalf("the plugin's container: %q, %v", out, err)
	}
	out, err = c.crictl("inspect", "-o", "json", strings.Fields(out)[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Info.Pid == 0 {
		t.Fatalf("the plugin's container: no pid in crictl inspect: %v", err)
	}
	return v.Info.Pid
}

// seenByPlugin checks that path is a network namespace in the plugin's mount namespace: the
// same namespace as the node's file at that path.
func (c *cluster) seenByPlugin(pid int, path string) error {
	node, err := c.nodeRun(30*time.Second, "stat", "-L", "-c", "%i", path)
	if err != nil {
		return fmt.Errorf("on the node: %w", err)
	}
	// The plugin's image has no stat: read the inode through its root from the node.
	inPlugin, err := c.nodeRun(30*time.Second, "stat", "-L", "-c", "%i", fmt.Sprintf("/proc/%d/root%s", pid, path))
	if err != nil {
		return fmt.Errorf("in the plugin's container: %w", err)
	}
	if strings.TrimSpace(node) != strings.TrimSpace(inPlugin) {
		return fmt.Errorf("the plugin's %s is inode %s, the node's %s", path, strings.TrimSpace(inPlugin), strings.TrimSpace(node))
	}
	return nil
}
