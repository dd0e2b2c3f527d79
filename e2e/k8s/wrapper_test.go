// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// The runtime wrapper on a Kubernetes node without NRI: Debian 12's containerd 1.6 with CRI,
// the wrapper registered as the CRI runtime bypass-hook by `install containerd-runtime` (its
// config through containerd's environment, as the command says), pods run with that runtime
// handler (a RuntimeClass's). Under selection: annotated an annotated pod is fenced from its
// sandbox on, a plain one is not, a misspelt annotation refuses the pod, and `crictl rmp`
// leaves nothing.
func TestContainerd16RuntimeWrapper(t *testing.T) {
	h := newHookNode(t)
	e := NewEnv(t, Options{Containerd16: true, ContainerdEnv: []string{"BYPASS_HOOK_CONFIG=" + h.Config}})
	if out, err := run(10*time.Second, e.Deps.Containerd, "--version"); err == nil {
		t.Logf("engine: %s", strings.TrimSpace(out))
	}
	cmd := exec.Command(hookBin, "install", "containerd-runtime", "--containerd-config", e.ConfigPath, "--config", h.Config)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install containerd-runtime: %v\n%s", err, out)
	}
	t.Logf("install containerd-runtime:\n%s", out)
	for _, want := range []string{"systemctl restart containerd", "handler: bypass-hook", "Environment=BYPASS_HOOK_CONFIG=" + h.Config} {
		if !strings.Contains(string(out), want) {
			t.Errorf("install containerd-runtime does not say %q", want)
		}
	}
	if err := e.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
	const handler = "bypass-hook"

	t.Run("annotated", func(t *testing.T) {
		r := startPod(t, e, PodConfig{Annotations: annotated, RuntimeHandler: handler}, "app")
		if ent, err := h.waitStage(r.Ctrs[0], "create", 10*time.Second); err != nil || *ent.Exit != 0 {
			t.Fatalf("create stage of the container: %+v %v", ent, err)
		}
		requireFenced(t, e, r.Status.NetNSPath)
		nsID := netnsID(t, r.Status.NetNSPath)
		rec := h.recordOf(t, nsID)
		if rec == nil || !slices.Contains(owners(rec), r.Ctrs[0]) || !slices.Contains(owners(rec), r.Pod.ID) {
			t.Fatalf("record of the pod's namespace: %+v, want the sandbox %s and the container %s as owners", rec, short(r.Pod.ID), short(r.Ctrs[0]))
		}
		r.remove(t, h, nsID)
	})

	t.Run("plain", func(t *testing.T) {
		r := startPod(t, e, PodConfig{RuntimeHandler: handler}, "app")
		requireUnfenced(t, e, h, r)
		r.remove(t, h, netnsID(t, r.Status.NetNSPath))
	})

	t.Run("near miss", func(t *testing.T) {
		_, err := e.RunPod(PodConfig{Annotations: map[string]string{"Bypass_Hook.io/enabled": "true"}, RuntimeHandler: handler})
		if err == nil {
			t.Fatal("a pod with a misspelt annotation started")
		}
		if !strings.Contains(err.Error(), "misspelling") {
			t.Errorf("crictl runp's error does not say why: %v", err)
		} else {
			t.Logf("refused: %v", err)
		}
		if ids, _ := e.PodIDs(); len(ids) != 0 {
			t.Errorf("pods left after the refusal: %v", ids)
		}
	})
}
