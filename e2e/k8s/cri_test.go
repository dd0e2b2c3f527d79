// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Crictl runs crictl against this containerd, inside the node namespace (crictl exec and
// attach reach containerd's stream server on 127.0.0.1 there), and returns its standard
// output. On failure the error carries standard error.
func (e *Env) Crictl(args ...string) (string, error) {
	return e.CrictlTimeout(90*time.Second, args...)
}

// CrictlTimeout is Crictl with a deadline of its own.
func (e *Env) CrictlTimeout(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{"--net=" + e.NetNS, "--", e.Deps.Crictl, "--config", e.CrictlConfig}, args...)
	cmd := exec.CommandContext(ctx, e.Deps.Nsenter, argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("crictl %s: timed out after %v: %s", strings.Join(args, " "), timeout, stderr.String())
	}
	if err != nil {
		return string(out), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// CrictlJSON runs crictl with `-o json` after the subcommand (args[0]; crictl takes no flags
// after the first positional argument) and decodes its output into v.
func (e *Env) CrictlJSON(v any, args ...string) error {
	argv := append([]string{args[0], "-o", "json"}, args[1:]...)
	out, err := e.Crictl(argv...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("crictl %s: decoding %q: %w", strings.Join(args, " "), tail(out, 5), err)
	}
	return nil
}

// PodConfig is what RunPod puts into crictl's pod sandbox config.
type PodConfig struct {
	Name        string            // default: pod-<random>
	Namespace   string            // Kubernetes namespace; default "default"
	UID         string            // default: uid-<name>
	Annotations map[string]string // pod annotations (bypass-hook.io/...)
	Labels      map[string]string
	HostNetwork bool // share the node's network namespace (NamespaceMode NODE)
	HostPID     bool // share the node's pid namespace (hostPID)
	// Privileged: a container of the pod is privileged (the kubelet then makes the sandbox so).
	Privileged bool
	// RuntimeHandler is the CRI runtime of the pod (a RuntimeClass's handler); "" for
	// containerd's default.
	RuntimeHandler string
}

// ContainerConfig is what StartContainer puts into crictl's container config.
type ContainerConfig struct {
	Name        string   // default: c-<random>
	Image       string   // default: the busybox image
	Command     []string // default: sleep 3600
	Args        []string
	Env         map[string]string
	Annotations map[string]string // container annotations
	Labels      map[string]string
	RunAsUser   *int64   // linux.security_context.run_as_user
	AddCaps     []string // linux.security_context.capabilities.add_capabilities, e.g. NET_ADMIN
	Privileged  bool
	// What a Kubernetes pod spec's volumes and securityContext become in CRI.
	Mounts         []Mount  // host paths bind-mounted into the container (hostPath volumes)
	DropCaps       []string // capabilities.drop_capabilities, e.g. ALL
	ReadOnlyRootfs bool     // readonly_rootfs (readOnlyRootFilesystem)
	NoNewPrivs     bool     // no_new_privs (allowPrivilegeEscalation: false)
	// CDIDevices are CRI's CDI_devices: fully qualified CDI device names, as the kubelet passes
	// them for a device plugin's or DRA driver's allocation.
	CDIDevices []string
}

// Mount is a host path bind-mounted into a container.
type Mount struct {
	HostPath, ContainerPath string
	ReadOnly                bool
}

// Pod is a pod sandbox that RunPod started.
type Pod struct {
	Env        *Env
	ID         string
	Config     PodConfig
	ConfigPath string // the pod JSON given to crictl
	Containers []string
}

// RunPod writes the pod config to a file and runs `crictl runp`. The sandbox is removed at
// cleanup if the test does not remove it.
func (e *Env) RunPod(c PodConfig) (*Pod, error) {
	if c.Name == "" {
		c.Name = "pod-" + randHex(3)
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.UID == "" {
		c.UID = "uid-" + c.Name + "-" + randHex(4)
	}
	logDir := filepath.Join(e.Dir, "pods", c.Namespace+"_"+c.Name+"_"+c.UID)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	netMode := 0 // POD
	if c.HostNetwork {
		netMode = 2 // NODE
	}
	cfg := map[string]any{
		"metadata":      map[string]any{"name": c.Name, "namespace": c.Namespace, "uid": c.UID, "attempt": 0},
		"log_directory": logDir,
		"annotations":   nonNil(c.Annotations),
		"labels":        nonNil(c.Labels),
		"linux": map[string]any{
			"cgroup_parent": e.CgroupParent,
			"security_context": map[string]any{
				"namespace_options": map[string]any{"network": netMode, "pid": pidMode(c.HostPID)},
				"privileged":        c.Privileged,
			},
		},
	}
	// As the kubelet: a pod on the host network has the node's UTS namespace, where runc
	// refuses to set a hostname.
	if !c.HostNetwork {
		cfg["hostname"] = c.Name
	}
	path := filepath.Join(e.Dir, "pods", c.Namespace+"_"+c.Name+".json")
	if err := writeJSON(path, cfg); err != nil {
		return nil, err
	}
	args := []string{"runp", path}
	if c.RuntimeHandler != "" {
		args = []string{"runp", "--runtime", c.RuntimeHandler, path}
	}
	out, err := e.Crictl(args...)
	if err != nil {
		return nil, err
	}
	id := strings.TrimSpace(out)
	e.noteSandbox(id)
	return &Pod{Env: e, ID: id, Config: c, ConfigPath: path}, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// CreateContainer writes the container config and runs `crictl create` (no start). NRI's
// CreateContainer runs here, so a refusal by an NRI validator shows as this error.
func (p *Pod) CreateContainer(c ContainerConfig) (string, error) {
	e := p.Env
	if c.Name == "" {
		c.Name = "c-" + randHex(3)
	}
	if c.Image == "" {
		c.Image = e.Deps.BusyboxImage
	}
	if c.Command == nil {
		c.Command = []string{"sleep", "3600"}
	}
	var envs []map[string]string
	for k, v := range c.Env {
		envs = append(envs, map[string]string{"key": k, "value": v})
	}
	sc := map[string]any{}
	if c.RunAsUser != nil {
		sc["run_as_user"] = map[string]any{"value": *c.RunAsUser}
	}
	if len(c.AddCaps) > 0 {
		sc["capabilities"] = map[string]any{"add_capabilities": c.AddCaps}
	}
	if c.Privileged {
		sc["privileged"] = true
	}
	if len(c.DropCaps) > 0 {
		caps, _ := sc["capabilities"].(map[string]any)
		if caps == nil {
			caps = map[string]any{}
		}
		caps["drop_capabilities"] = c.DropCaps
		sc["capabilities"] = caps
	}
	if c.ReadOnlyRootfs {
		sc["readonly_rootfs"] = true
	}
	if c.NoNewPrivs {
		sc["no_new_privs"] = true
	}
	var mounts []map[string]any
	for _, m := range c.Mounts {
		mounts = append(mounts, map[string]any{"host_path": m.HostPath, "container_path": m.ContainerPath, "readonly": m.ReadOnly})
	}
	cfg := map[string]any{
		"metadata":    map[string]any{"name": c.Name, "attempt": 0},
		"image":       map[string]any{"image": c.Image},
		"command":     c.Command,
		"args":        c.Args,
		"envs":        envs,
		"annotations": nonNil(c.Annotations),
		"labels":      nonNil(c.Labels),
		"log_path":    c.Name + ".log",
		"linux":       map[string]any{"security_context": sc},
		"mounts":      mounts,
	}
	if len(c.CDIDevices) > 0 {
		var devs []map[string]string
		for _, d := range c.CDIDevices {
			devs = append(devs, map[string]string{"name": d})
		}
		cfg["CDI_devices"] = devs
	}
	path := filepath.Join(e.Dir, "pods", p.Config.Namespace+"_"+p.Config.Name+"_"+c.Name+".json")
	if err := writeJSON(path, cfg); err != nil {
		return "", err
	}
	out, err := e.Crictl("create", "--no-pull", p.ID, path, p.ConfigPath)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	p.Containers = append(p.Containers, id)
	return id, nil
}

// StartContainer creates and starts a container in the pod and returns its id. The OCI
// createRuntime hooks run at start (runc create), so a hook's refusal shows as this error.
func (p *Pod) StartContainer(c ContainerConfig) (string, error) {
	id, err := p.CreateContainer(c)
	if err != nil {
		return "", err
	}
	if _, err := p.Env.Crictl("start", id); err != nil {
		return id, err
	}
	return id, nil
}

// PodStatus is what `crictl inspectp` tells about a pod.
type PodStatus struct {
	ID          string
	State       string // SANDBOX_READY, SANDBOX_NOTREADY
	IP          string // first (IPv4) address
	IPs         []string
	NetNSPath   string // the pod's network namespace, for ProbeTCP and friends
	Annotations map[string]string
	Raw         json.RawMessage // the whole crictl output
}

// Inspect runs `crictl inspectp` on the pod.
func (p *Pod) Inspect() (*PodStatus, error) { return p.Env.InspectPod(p.ID) }

// InspectPod runs `crictl inspectp -o json ID`.
func (e *Env) InspectPod(id string) (*PodStatus, error) {
	var raw json.RawMessage
	if err := e.CrictlJSON(&raw, "inspectp", id); err != nil {
		return nil, err
	}
	var v struct {
		Status struct {
			ID      string `json:"id"`
			State   string `json:"state"`
			Network struct {
				IP            string `json:"ip"`
				AdditionalIPs []struct {
					IP string `json:"ip"`
				} `json:"additionalIps"`
			} `json:"network"`
			Annotations map[string]string `json:"annotations"`
		} `json:"status"`
		Info struct {
			RuntimeSpec *specs.Spec `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	s := &PodStatus{ID: v.Status.ID, State: v.Status.State, IP: v.Status.Network.IP,
		Annotations: v.Status.Annotations, Raw: raw}
	if s.IP != "" {
		s.IPs = append(s.IPs, s.IP)
	}
	for _, a := range v.Status.Network.AdditionalIPs {
		s.IPs = append(s.IPs, a.IP)
	}
	if rs := v.Info.RuntimeSpec; rs != nil && rs.Linux != nil {
		for _, ns := range rs.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				s.NetNSPath = ns.Path
			}
		}
	}
	return s, nil
}

// IPv6 is the pod's first IPv6 address, or "".
func (s *PodStatus) IPv6() string {
	for _, ip := range s.IPs {
		if strings.Contains(ip, ":") {
			return ip
		}
	}
	return ""
}

// ContainerStatus is what `crictl inspect` tells about a container.
type ContainerStatus struct {
	ID          string
	State       string // CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED
	ExitCode    int
	Reason      string
	Message     string
	Pid         int
	Annotations map[string]string
	Spec        *specs.Spec // the OCI spec containerd gave runc: NRI-injected hooks show in Spec.Hooks
	Raw         json.RawMessage
}

// InspectContainer runs `crictl inspect -o json ID`.
func (e *Env) InspectContainer(id string) (*ContainerStatus, error) {
	var raw json.RawMessage
	if err := e.CrictlJSON(&raw, "inspect", id); err != nil {
		return nil, err
	}
	var v struct {
		Status struct {
			ID          string            `json:"id"`
			State       string            `json:"state"`
			ExitCode    int               `json:"exitCode"`
			Reason      string            `json:"reason"`
			Message     string            `json:"message"`
			Annotations map[string]string `json:"annotations"`
		} `json:"status"`
		Info struct {
			Pid         int         `json:"pid"`
			RuntimeSpec *specs.Spec `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return &ContainerStatus{ID: v.Status.ID, State: v.Status.State, ExitCode: v.Status.ExitCode,
		Reason: v.Status.Reason, Message: v.Status.Message, Pid: v.Info.Pid,
		Annotations: v.Status.Annotations, Spec: v.Info.RuntimeSpec, Raw: raw}, nil
}

var execExitRE = regexp.MustCompile(`command terminated with exit code (\d+)`)

// Exec runs a command in a container (`crictl exec`, streaming through containerd's stream
// server in the node namespace) and returns its standard output and error and its exit code.
// err is set only when the command could not be run at all.
//
// Not `crictl exec --sync`: CRI's ExecSync loses standard output when the exit code is not 0
// and merges standard error into standard output.
func (e *Env) Exec(ctrID string, timeout time.Duration, argv ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append([]string{"--net=" + e.NetNS, "--", e.Deps.Crictl, "--config", e.CrictlConfig,
		"exec", ctrID}, argv...)
	cmd := exec.CommandContext(ctx, e.Deps.Nsenter, args...)
	var o, se strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &se
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return o.String(), se.String(), -1, fmt.Errorf("exec %v in %s: timed out after %v", argv, ctrID, timeout)
	}
	if runErr == nil {
		return o.String(), se.String(), 0, nil
	}
	// crictl ends with "execing command in container ID: command terminated with exit code N"
	// for a command that failed, and with other reasons for its own failures.
	errOut := se.String()
	if i := strings.LastIndex(errOut, "execing command in container"); i >= 0 {
		msg := strings.TrimSpace(errOut[i:])
		if m := execExitRE.FindStringSubmatch(msg); m != nil {
			code, _ := strconv.Atoi(m[1])
			return o.String(), errOut[:i], code, nil
		}
		return o.String(), errOut[:i], -1, fmt.Errorf("crictl exec: %s", msg)
	}
	return o.String(), errOut, -1, fmt.Errorf("crictl exec: %v: %s", runErr, strings.TrimSpace(errOut))
}

// ProbeFromContainer runs /bin/bhprobe in the container, as the container's user, and returns
// what it saw. mode is tcp, udp or http; proxy (HOST:PORT) applies to http.
func (e *Env) ProbeFromContainer(ctrID, mode, target, proxy string, timeout time.Duration) ProbeResult {
	argv := []string{"/bin/bhprobe", "-timeout", timeout.String()}
	if proxy != "" {
		argv = append(argv, "-proxy", proxy)
	}
	argv = append(argv, mode, target)
	stdout, stderr, code, err := e.Exec(ctrID, timeout+10*time.Second, argv...)
	if err != nil {
		return ProbeResult{Outcome: Failed, Err: err}
	}
	var v struct {
		Outcome   Outcome `json:"outcome"`
		ElapsedMS int64   `json:"elapsed_ms"`
		Error     string  `json:"error"`
		Status    int     `json:"status"`
		Body      string  `json:"body"`
	}
	if jerr := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &v); jerr != nil {
		return ProbeResult{Outcome: Failed, Err: fmt.Errorf("bhprobe exit %d: %q %q", code, stdout, stderr)}
	}
	r := ProbeResult{Outcome: v.Outcome, Elapsed: time.Duration(v.ElapsedMS) * time.Millisecond,
		Status: v.Status, Body: v.Body}
	if v.Error != "" {
		r.Err = errors.New(v.Error)
	}
	return r
}

// Stop runs `crictl stopp`.
func (p *Pod) Stop() error { _, err := p.Env.Crictl("stopp", p.ID); return err }

// Remove runs `crictl rmp` (the pod must be stopped, or use RemoveForce).
func (p *Pod) Remove() error { _, err := p.Env.Crictl("rmp", p.ID); return err }

// RemoveForce runs `crictl rmp -f`.
func (p *Pod) RemoveForce() error { _, err := p.Env.Crictl("rmp", "-f", p.ID); return err }

// StopContainer runs `crictl stop` with a grace period.
func (e *Env) StopContainer(id string, grace time.Duration) error {
	_, err := e.Crictl("stop", "--timeout", fmt.Sprint(int(grace.Seconds())), id)
	return err
}

// RemoveContainer runs `crictl rm -f`.
func (e *Env) RemoveContainer(id string) error {
	_, err := e.Crictl("rm", "-f", id)
	return err
}

// PodIDs lists the pod sandboxes CRI knows (`crictl pods -q`).
func (e *Env) PodIDs() ([]string, error) {
	out, err := e.Crictl("pods", "-q")
	return strings.Fields(out), err
}

// ContainerIDs lists all containers CRI knows, exited ones included (`crictl ps -a -q`).
func (e *Env) ContainerIDs() ([]string, error) {
	out, err := e.Crictl("ps", "-a", "-q")
	return strings.Fields(out), err
}

// pidMode is CRI's NamespaceMode of a pod's pid namespace: POD (0), or NODE (2) for hostPID.
func pidMode(host bool) int {
	if host {
		return 2
	}
	return 0
}
