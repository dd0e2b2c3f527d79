// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const probeTimeout = 5 * time.Second

// TestSmoke proves the environment, with no bypass-hook anywhere: a plain pod gets addresses
// on the bridge and reaches the gateway's HTTP server directly and through tinyproxy, over
// IPv4 and IPv6, from the test (in the pod's namespace) and from the container itself; after
// stopp and rmp nothing of it is left.
func TestSmoke(t *testing.T) {
	e := NewEnv(t, Options{})

	pod, err := e.RunPod(PodConfig{Name: "smoke"})
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := pod.StartContainer(ContainerConfig{Name: "sleeper", Command: []string{"sleep", "3600"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := pod.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s: state %s, IPs %v, netns %s", pod.ID[:12], st.State, st.IPs, st.NetNSPath)
	if st.State != "SANDBOX_READY" {
		t.Errorf("pod state %s, want SANDBOX_READY", st.State)
	}
	_, sub4, _ := net.ParseCIDR(Subnet4)
	_, sub6, _ := net.ParseCIDR(Subnet6)
	if ip := net.ParseIP(st.IP); ip == nil || !sub4.Contains(ip) || st.IP == Gateway4 {
		t.Errorf("pod IPv4 %q is not a host address of %s", st.IP, Subnet4)
	}
	if ip := net.ParseIP(st.IPv6()); ip == nil || !sub6.Contains(ip) {
		t.Errorf("pod IPv6 %q is not in %s", st.IPv6(), Subnet6)
	}
	if !strings.HasPrefix(st.NetNSPath, e.Dir+"/") {
		t.Errorf("pod netns %q is not under %s", st.NetNSPath, e.Dir)
	}
	cs, err := e.InspectContainer(ctr)
	if err != nil {
		t.Fatal(err)
	}
	if cs.State != "CONTAINER_RUNNING" || cs.Pid == 0 {
		t.Errorf("container state %s pid %d, want running", cs.State, cs.Pid)
	}

	if out, _ := mustExec(t, e, ctr, "ip", "addr"); !strings.Contains(out, st.IP+"/") {
		t.Errorf("container's ip addr does not show %s:\n%s", st.IP, out)
	} else {
		t.Logf("container's addresses:\n%s", out)
	}
	ns := st.NetNSPath
	expect := func(what string, r ProbeResult, want Outcome) {
		t.Helper()
		t.Logf("%-45s %v", what, r)
		if r.Outcome != want {
			t.Errorf("%s: %v, want %s", what, r, want)
		}
		if want == Success && r.Body != HTTPBody && r.Status != 0 {
			t.Errorf("%s: body %q", what, r.Body)
		}
	}
	// From the pod's namespace (the test's own sockets).
	expect("netns: http direct v4", ProbeHTTP(ns, e.HTTPAddr4(), probeTimeout), Success)
	expect("netns: http via proxy v4", ProbeProxy(ns, e.ProxyAddr4(), e.HTTPAddr4(), probeTimeout), Success)
	expect("netns: http direct v6", ProbeHTTP(ns, e.HTTPAddr6(), probeTimeout), Success)
	expect("netns: http via proxy v6", ProbeProxy(ns, e.ProxyAddr6(), e.HTTPAddr6(), probeTimeout), Success)
	expect("netns: tcp to a closed port (RST)", ProbeTCP(ns, Gateway4+":9", probeTimeout), Refused)
	expect("netns: udp to a closed port (ICMP)", ProbeUDP(ns, Gateway4+":9", probeTimeout), Refused)
	// From inside the container, as its user.
	expect("ctr: http direct v4", e.ProbeFromContainer(ctr, "http", e.HTTPAddr4(), "", probeTimeout), Success)
	expect("ctr: http via proxy v4", e.ProbeFromContainer(ctr, "http", e.HTTPAddr4(), e.ProxyAddr4(), probeTimeout), Success)
	expect("ctr: http via proxy v6", e.ProbeFromContainer(ctr, "http", e.HTTPAddr6(), e.ProxyAddr6(), probeTimeout), Success)
	expect("ctr: tcp to a closed port", e.ProbeFromContainer(ctr, "tcp", Gateway4+":9", "", probeTimeout), Refused)

	peers := strings.Join(e.HTTP.Peers(), " ")
	if !strings.Contains(peers, st.IP+":") || !strings.Contains(peers, Gateway4+":") {
		t.Errorf("HTTP server peers %q: want direct requests from %s and proxied ones from %s", peers, st.IP, Gateway4)
	}
	if out, code := mustExec(t, e, ctr, "cat", "/proc/self/oom_score_adj"); code != 0 || strings.TrimSpace(out) == "" {
		t.Errorf("exec: exit %d, output %q", code, out)
	}
	if _, _, code, err := e.Exec(ctr, 10*time.Second, "sh", "-c", "exit 7"); err != nil || code != 7 {
		t.Errorf("exec exit code: got %d, %v; want 7", code, err)
	}

	// Stop and remove: nothing of the pod is left.
	if err := pod.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pod.Remove(); err != nil {
		t.Fatal(err)
	}
	e.AssertNoPodLeft(t, pod.ID, ns)
}

func mustExec(t *testing.T, e *Env, ctr string, argv ...string) (string, int) {
	t.Helper()
	out, stderr, code, err := e.Exec(ctr, 10*time.Second, argv...)
	if err != nil {
		t.Fatalf("exec %v: %v (%s)", argv, err, stderr)
	}
	return out, code
}

// AssertNoPodLeft checks that a removed pod left nothing: no sandbox or container in CRI, no
// network namespace, no mounts under the environment's directory, no cgroups, no shim, no
// veth on the bridge, no IP reserved, no CNI result file.
func (e *Env) AssertNoPodLeft(t *testing.T, podID, netnsPath string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		problems := e.podLeftovers(podID, netnsPath)
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Errorf("after rmp of %s: %s", podID[:12], p)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *Env) podLeftovers(podID, netnsPath string) []string {
	var problems []string
	if ids, err := e.PodIDs(); err != nil || len(ids) != 0 {
		problems = append(problems, "crictl pods: "+strings.Join(ids, " ")+errString(err))
	}
	if ids, err := e.ContainerIDs(); err != nil || len(ids) != 0 {
		problems = append(problems, "crictl ps -a: "+strings.Join(ids, " ")+errString(err))
	}
	if netnsPath != "" {
		if _, err := os.Stat(netnsPath); !os.IsNotExist(err) {
			problems = append(problems, "pod netns still exists: "+netnsPath)
		}
	}
	if ms := e.MountsUnder(); len(ms) != 0 {
		problems = append(problems, "mounts: "+strings.Join(ms, " "))
	}
	if ds := e.CgroupDirs(); len(ds) != 0 {
		problems = append(problems, "cgroups: "+strings.Join(ds, " "))
	}
	if pids := e.shimPids(); len(pids) != 0 {
		problems = append(problems, "shims still running")
	}
	for _, id := range []string{podID, podID + "/debug"} {
		if _, err := os.Stat(ShimSocketPath(e.Socket, K8sNamespace, id)); err == nil {
			problems = append(problems, "shim socket left for "+id)
		}
	}
	if out, err := e.NodeRun(e.Deps.IP, "-o", "link", "show", "master", BridgeName); err != nil || strings.TrimSpace(out) != "" {
		problems = append(problems, "ports on the bridge: "+out+errString(err))
	}
	ipam, _ := filepath.Glob(filepath.Join(e.Dir, "cni", "ipam", e.CNINetwork, "*"))
	for _, f := range ipam {
		if b := filepath.Base(f); b != "lock" && !strings.HasPrefix(b, "last_reserved_ip") {
			problems = append(problems, "IP still reserved: "+b)
		}
	}
	if rs, _ := filepath.Glob("/var/lib/cni/results/*" + podID + "*"); len(rs) != 0 {
		problems = append(problems, "CNI results: "+strings.Join(rs, " "))
	}
	return problems
}

func errString(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}
