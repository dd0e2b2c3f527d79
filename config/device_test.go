// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"strings"
	"testing"
)

func TestDecideDevice(t *testing.T) {
	const annotated = twoProxies + "selection: annotated\n"
	type want struct {
		fence   bool
		mode    string
		errType string // "", "device", "annotation", "config"
		errHas  string
	}
	for _, tc := range []struct {
		name   string
		cfg    string
		ann    map[string]string
		device string
		want   want
	}{
		{"no device is Decide", annotated, nil, "", want{}},
		{"default opts in under annotated", annotated, nil, DeviceDefault, want{fence: true, mode: ModeEnforce}},
		{"default under all", twoProxies, nil, DeviceDefault, want{fence: true, mode: ModeEnforce}},
		{"default in an audit config", annotated + "mode: audit\n", nil, DeviceDefault, want{fence: true, mode: ModeAudit}},
		{"default with enabled=true", annotated, map[string]string{AnnEnabled: "true"}, DeviceDefault, want{fence: true, mode: ModeEnforce}},
		{"default with mode=enforce narrowing audit", annotated + "mode: audit\n", map[string]string{AnnMode: ModeEnforce}, DeviceDefault, want{fence: true, mode: ModeEnforce}},
		{"default with mode=audit widens", annotated, map[string]string{AnnMode: ModeAudit}, DeviceDefault, want{errType: "annotation", errHas: "bypass-hook.io/mode"}},
		{"default contradicted by enabled=false", annotated, map[string]string{AnnEnabled: "false"}, DeviceDefault, want{errType: "device", errHas: "contradicts"}},
		{"audit where the config enforces widens", annotated, nil, DeviceAudit, want{errType: "device", errHas: "bypass-hook.io/fence=audit"}},
		{"audit where the config audits", annotated + "mode: audit\n", nil, DeviceAudit, want{fence: true, mode: ModeAudit}},
		{"audit, trusted", annotated + "trustAnnotations: true\n", nil, DeviceAudit, want{fence: true, mode: ModeAudit}},
		{"audit contradicted by mode=enforce", annotated + "mode: audit\n", map[string]string{AnnMode: ModeEnforce}, DeviceAudit, want{errType: "device", errHas: "contradicts"}},
		{"audit with the same annotation", annotated + "mode: audit\n", map[string]string{AnnMode: ModeAudit}, DeviceAudit, want{fence: true, mode: ModeAudit}},
		{"proxy subset still applies", annotated, map[string]string{AnnProxies: "198.51.100.1:3128"}, DeviceDefault, want{fence: true, mode: ModeEnforce}},
		{"proxy outside the config refused", annotated, map[string]string{AnnProxies: "198.51.100.9:3128"}, DeviceDefault, want{errType: "annotation", errHas: "subset"}},
		{"no proxies", "selection: annotated\n", nil, DeviceDefault, want{errType: "config", errHas: "proxies"}},
		{"unknown device", annotated, nil, "gpu", want{errType: "config", errHas: `"gpu"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.cfg)
			d, err := cfg.DecideDevice(tc.ann, tc.device)
			var de *DeviceError
			var ae *AnnotationError
			var ce *Error
			switch tc.want.errType {
			case "":
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			case "device":
				// A device refusal is an annotation refusal to everyone
				// who checks for one (exit code, failure: open).
				if !errors.As(err, &de) || !errors.As(err, &ae) {
					t.Fatalf("want a DeviceError that unwraps to an AnnotationError, got %T %v", err, err)
				}
			case "annotation":
				if errors.As(err, &de) || !errors.As(err, &ae) {
					t.Fatalf("want a plain AnnotationError, got %T %v", err, err)
				}
			case "config":
				if !errors.As(err, &ce) {
					t.Fatalf("want a config Error, got %T %v", err, err)
				}
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.want.errHas) {
					t.Errorf("error %q does not mention %q", err, tc.want.errHas)
				}
				return
			}
			if d.Fence != tc.want.fence || (d.Fence && d.Policy.Mode != tc.want.mode) {
				t.Errorf("got fence=%v mode=%q, want fence=%v mode=%q", d.Fence, d.Policy.Mode, tc.want.fence, tc.want.mode)
			}
		})
	}
}

// The request must not leak into the caller's map: a runtime's state is
// read once and logged as it came.
func TestDecideDeviceKeepsAnnotations(t *testing.T) {
	cfg := mustParse(t, twoProxies+"selection: annotated\nmode: audit\n")
	ann := map[string]string{"io.kubernetes.pod.name": "x"}
	if _, err := cfg.DecideDevice(ann, DeviceAudit); err != nil {
		t.Fatal(err)
	}
	if len(ann) != 1 {
		t.Errorf("DecideDevice changed the annotations: %v", ann)
	}
}

// The same policy whichever way the container asked: the device and the
// annotations it stands for give one digest, so a device-fenced container
// and an annotated one can share a namespace.
func TestDeviceDigestMatchesAnnotation(t *testing.T) {
	cfg := mustParse(t, twoProxies+"selection: annotated\nmode: audit\n")
	for dev, ann := range deviceAnnotations {
		a, errA := cfg.DecideDevice(nil, dev)
		b, errB := cfg.Decide(ann)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if a.Policy.Digest() != b.Policy.Digest() {
			t.Errorf("device %s: digest %s, its annotations give %s", dev, a.Policy.Digest(), b.Policy.Digest())
		}
	}
}
