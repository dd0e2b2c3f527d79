// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"maps"
)

// CDIKind is the kind of the CDI spec `install cdi` writes: a container
// asks for the fence with `--device bypass-hook.io/fence=default`.
const CDIKind = "bypass-hook.io/fence"

// The devices of the CDI spec. default fences with the config's policy,
// audit in audit mode.
const (
	DeviceDefault = "default"
	DeviceAudit   = "audit"
)

// DeviceFlag is the flag of the hook's stages that names the CDI device
// the container requested; the CDI spec's hooks pass it.
const DeviceFlag = "cdi-device"

// Devices lists the device names of the CDI spec, in the order written.
var Devices = []string{DeviceDefault, DeviceAudit}

// deviceAnnotations is what requesting each device stands for. A runtime
// that injects CDI devices gives the hook no annotations of its own
// (Docker has none to give), so the request is said in the annotations'
// terms and goes through the same policy: opting in, and audit only where
// an annotation could ask for it.
var deviceAnnotations = map[string]map[string]string{
	DeviceDefault: {AnnEnabled: "true"},
	DeviceAudit:   {AnnEnabled: "true", AnnMode: ModeAudit},
}

// DeviceError refuses a container on its CDI device request: the request
// contradicts the container's annotations, or would widen the policy as the
// annotation it stands for would. It unwraps to that AnnotationError, so it
// is refused wherever an annotation would be (never let through by
// failure: open).
type DeviceError struct {
	Device string
	Err    *AnnotationError
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("CDI device %s=%s (which stands for %s=%q): %s", CDIKind, e.Device, e.Err.Annotation, e.Err.Value, e.Err.Msg)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// DecideDevice is Decide for a container that requested the CDI device
// named device ("" for none: then it is Decide). The request counts as the
// annotations it stands for; an annotation of the container that says
// otherwise is refused rather than silently outvoted.
func (c *Config) DecideDevice(annotations map[string]string, device string) (Decision, error) {
	if device == "" {
		return c.Decide(annotations)
	}
	implied, ok := deviceAnnotations[device]
	if !ok {
		return Decision{}, &Error{Key: "CDI device", Msg: fmt.Sprintf("%q is not a device of %s; the devices are %q and %q (write the CDI spec again with `bypass-hook install cdi`)", device, CDIKind, DeviceDefault, DeviceAudit)}
	}
	merged := maps.Clone(annotations)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range implied {
		if have, set := annotations[k]; set && have != v {
			return Decision{}, &DeviceError{device, &AnnotationError{k, v,
				fmt.Sprintf("the container's own annotation %s=%q contradicts it; drop one of the two", k, have)}}
		}
		merged[k] = v
	}
	dec, err := c.Decide(merged)
	var annErr *AnnotationError
	if errors.As(err, &annErr) {
		if v, fromDevice := implied[annErr.Annotation]; fromDevice && annotations[annErr.Annotation] != v {
			return Decision{}, &DeviceError{device, annErr}
		}
	}
	return dec, err
}
