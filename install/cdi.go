// SPDX-License-Identifier: Apache-2.0

package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/fserr"
)

// The Container Device Interface is how Docker (25+; on by default since
// 28.2), podman (4.1+), containerd (1.7+, on by default in 2.x) and CRI-O
// add OCI hooks to the containers that ask for a device. The fence is such
// a device: its only edit is the hook, at createRuntime and poststop.

// CDIDir is where `install cdi` writes by default: the directory of static
// specs that every CDI runtime reads (/var/run/cdi, also read, is for
// generated ones and wins over it).
const CDIDir = cdi.DefaultStaticDir

// CDIVersion is the cdiVersion written. The spec uses only hooks, which
// every version has. 0.3.0 is the oldest that today's CDI library (v1.x:
// Docker 28 and 29, containerd 2.x) takes, and podman 4.3's vendored
// library takes nothing newer than 0.5.0: measured with podman 4.3.1,
// which refuses 0.6.0 and later as "unresolvable CDI devices".
const CDIVersion = "0.3.0"

// CDIFileName is the spec's file name: vendor and class, as the CDI
// library names a spec (cdi.GenerateSpecName).
var CDIFileName = cdi.GenerateSpecName(cdiVendorClass()) + ".json"

func cdiVendorClass() (vendor, class string) {
	vendor, class, _ = strings.Cut(config.CDIKind, "/")
	return vendor, class
}

// NewCDISpec is the CDI spec that runs r for the devices of config.Devices.
// Each device's hooks pass its name to the hook (--cdi-device NAME), since
// the hook sees no trace of the request otherwise: a runtime gives hooks
// the state, their own args and env, and none of the container's.
func NewCDISpec(r Registration) cdispec.Spec {
	spec := cdispec.Spec{Version: CDIVersion, Kind: config.CDIKind}
	for _, name := range config.Devices {
		spec.Devices = append(spec.Devices, cdispec.Device{
			Name: name,
			ContainerEdits: cdispec.ContainerEdits{Hooks: []*cdispec.Hook{
				// createRuntime: the namespace exists and the workload has
				// not run yet. poststop: runc runs it when the container is
				// deleted (Docker and containerd delete it when it stops),
				// podman runs it itself.
				cdiHook("createRuntime", r, SubCreate, name),
				cdiHook("poststop", r, SubPoststop, name),
			}},
		})
	}
	return spec
}

func cdiHook(stage string, r Registration, subcommand, device string) *cdispec.Hook {
	h := r.Hook(subcommand)
	return &cdispec.Hook{
		HookName: stage,
		Path:     h.Path,
		Args:     append(h.Args, "--"+config.DeviceFlag, device),
		Env:      h.Env,
		Timeout:  h.Timeout,
	}
}

// MarshalCDISpec renders a spec as written to disk.
func MarshalCDISpec(spec cdispec.Spec) ([]byte, error) {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteCDI checks r and writes its CDI spec into dir (made if needed) under
// root, as WriteHooksDir does. The file is checked with the CDI library's
// own reader before it replaces the old one, so a spec that a runtime would
// refuse is never put in place. A file that already says the same is left
// alone (runtimes watch the directory). It returns the path and whether it
// changed.
func WriteCDI(root, dir string, r Registration) (path string, changed bool, err error) {
	if err := r.Check(root); err != nil {
		return "", false, err
	}
	data, err := MarshalCDISpec(NewCDISpec(r))
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(root, dir, CDIFileName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return path, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, fmt.Errorf("making the CDI directory: %w", err)
	}
	err = writeFileAtomicChecked(path, data, 0o644, func(tmp string) error {
		if _, err := cdi.ReadSpec(tmp, 0); err != nil {
			return fmt.Errorf("the CDI library refuses the spec: %w", err)
		}
		return nil
	})
	return path, err == nil, err
}

// RemoveCDI removes the spec from dir under root. It reports whether there
// was one.
func RemoveCDI(root, dir string) (path string, removed bool, err error) {
	path = filepath.Join(root, dir, CDIFileName)
	err = os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, false, nil
	}
	if err != nil {
		return path, false, fmt.Errorf("removing %s: %w", path, fserr.Cause(err))
	}
	return path, true, nil
}
