// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
)

// CDI through CRI, without NRI: containerd 2.2 with enable_cdi reads the spec that
// `bypass-hook install cdi` wrote, and injects the hook into the containers that ask for the
// device, by a cdi.k8s.io/ annotation on the container or by CRI's CDI_devices field (what the
// kubelet sends for a device plugin's or a DRA driver's allocation). Under selection: annotated,
// with no bypass-hook.io annotation anywhere, those pods are fenced and a pod without is not.
func TestCDIThroughCRI(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{CDI: true, DisableNRI: true})
	cmd := exec.Command(hookBin, "install", "cdi", e.CDIDir, "--binary", hookBin, "--config", h.Config)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install cdi: %v\n%s", err, out)
	}
	device := config.CDIKind + "=" + config.DeviceDefault

	for _, tc := range []struct {
		name string
		ctr  ContainerConfig
	}{
		{"annotation", ContainerConfig{Annotations: map[string]string{"cdi.k8s.io/bypass-hook": device}}},
		{"CDI_devices", ContainerConfig{CDIDevices: []string{device}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startCDIPod(t, e, tc.ctr)
			id := r.Ctrs[0]
			if ent, err := h.waitStage(id, "create", 10*time.Second); err != nil || *ent.Exit != 0 {
				t.Fatalf("create stage: %+v %v", ent, err)
			}
			requireCDIHooks(t, e, h, id, true)
			requireFenced(t, e, r.Status.NetNSPath)
			nsID := netnsID(t, r.Status.NetNSPath)
			if rec := h.recordOf(t, nsID); rec == nil || !slices.Equal(owners(rec), []string{id}) {
				t.Fatalf("record of the pod's namespace: %+v, want owner %s", rec, short(id))
			}
			r.remove(t, h, nsID)
		})
	}

	t.Run("no device", func(t *testing.T) {
		r := startCDIPod(t, e, ContainerConfig{})
		requireCDIHooks(t, e, h, r.Ctrs[0], false)
		requireUnfenced(t, e, h, r)
	})
}

// startCDIPod runs a pod with one container of config c and returns it as startPod does.
func startCDIPod(t *testing.T, e *Env, c ContainerConfig) *podRun {
	t.Helper()
	pod, err := e.RunPod(PodConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.RemoveForce() })
	id, err := pod.StartContainer(c)
	if err != nil {
		t.Fatalf("%v\ncontainerd log:\n%s", err, tail(e.ContainerdLog(), 20))
	}
	r := &podRun{Pod: pod, Ctrs: []string{id}}
	if r.Status, err = pod.Inspect(); err != nil {
		t.Fatal(err)
	}
	return r
}

// requireCDIHooks checks the OCI spec containerd gave runc: with want, the spec's createRuntime
// and poststop hooks run the hook with --cdi-device default; without, no bypass-hook at all.
func requireCDIHooks(t *testing.T, e *Env, h *hookNode, ctrID string, want bool) {
	t.Helper()
	cs, err := e.InspectContainer(ctrID)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Spec == nil {
		t.Fatalf("crictl inspect %s shows no runtime spec", short(ctrID))
	}
	var got []string
	if hs := cs.Spec.Hooks; hs != nil {
		for stage, list := range map[string][]specs.Hook{"prestart": hs.Prestart, "createRuntime": hs.CreateRuntime,
			"createContainer": hs.CreateContainer, "startContainer": hs.StartContainer, "poststart": hs.Poststart, "poststop": hs.Poststop} {
			for _, hk := range list {
				got = append(got, stage+": "+strings.Join(hk.Args, " "))
			}
		}
	}
	slices.Sort(got)
	var wantHooks []string
	if want {
		wantHooks = []string{
			"createRuntime: " + hookBin + " --config " + h.Config + " create --cdi-device default",
			"poststop: " + hookBin + " --config " + h.Config + " poststop --cdi-device default",
		}
	}
	if !slices.Equal(got, wantHooks) {
		t.Errorf("container %s: hooks %q, want %q", short(ctrID), got, wantHooks)
	}
}
