// SPDX-License-Identifier: Apache-2.0

// Package oci reads what a runtime hands a hook: the OCI state on stdin, the
// stage it asks for, and the bundle's config.json (namespace path,
// capabilities).
package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/internal/safefile"
)

// Stage is the hook stage to run.
type Stage string

const (
	StageCreate   Stage = "create"
	StagePoststop Stage = "poststop"
)

// InputError is bad input from the runtime (the state on stdin). The hook
// exits 2 on it, as on a config error.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// maxState bounds what we read from stdin; a state is a few hundred bytes.
const maxState = 1 << 20

// runc's rule for container ids. The id goes into log prefixes and records,
// so we hold every runtime to it.
// idRe is compiled on first use rather than at init, which every hook
// process pays for.
var idRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[\w+.-]+$`) })

// ReadState parses the OCI state a runtime writes to a hook's stdin.
func ReadState(r io.Reader) (*specs.State, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxState+1))
	if err != nil {
		return nil, inputErr("reading the OCI state from stdin: %v", err)
	}
	return ParseState(data)
}

// ParseState parses and checks an OCI state.
func ParseState(data []byte) (*specs.State, error) {
	if len(data) > maxState {
		return nil, inputErr("the OCI state on stdin is larger than %d bytes", maxState)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, inputErr("stdin is empty: the hook expects the container's OCI state as JSON, as the runtime writes it")
	}
	var st specs.State
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&st); err != nil {
		return nil, inputErr("stdin is not an OCI state (JSON): %v", err)
	}
	if dec.More() {
		return nil, inputErr("stdin holds more than one JSON value; the hook expects one OCI state")
	}
	if st.ID == "" {
		return nil, inputErr("the OCI state has no container id")
	}
	if len(st.ID) > 1024 || !idRe().MatchString(st.ID) {
		return nil, inputErr("the OCI state's container id %q has characters other than letters, digits, '_', '+', '-' and '.'", st.ID)
	}
	if st.Pid < 0 {
		return nil, inputErr("the OCI state's pid %d is negative", st.Pid)
	}
	if st.Bundle != "" && !filepath.IsAbs(st.Bundle) {
		return nil, inputErr("the OCI state's bundle %q is not an absolute path", st.Bundle)
	}
	return &st, nil
}

// StageFor picks the stage from the state's status, for `bypass-hook hook`.
func StageFor(st *specs.State) (Stage, error) {
	switch st.Status {
	case specs.StateCreating, specs.StateCreated:
		return StageCreate, nil
	case specs.StateStopped:
		return StagePoststop, nil
	}
	return "", inputErr("the OCI state's status %q is not one the hook acts on: register it for createRuntime or prestart (status creating/created) and poststop (status stopped)", st.Status)
}

// Bundle is what the hook needs from the bundle's config.json.
type Bundle struct {
	NetnsPath    string   // linux.namespaces type network path; "" if the runtime makes one
	Capabilities []string // every capability in any of the process's sets
}

// bundleSpec is the part of specs.Spec the hook reads. Decoding into the
// whole specs.Spec made a noticeable part of every create (docs/bench.md):
// encoding/json building its caches for types the hook never looks at.
type bundleSpec struct {
	Process *struct {
		Capabilities *specs.LinuxCapabilities `json:"capabilities,omitempty"`
	} `json:"process,omitempty"`
	Linux *struct {
		Namespaces []specs.LinuxNamespace `json:"namespaces,omitempty"`
	} `json:"linux,omitempty"`
}

// ReadBundle reads the bundle's config.json. Under user namespaces it may be
// unreadable; callers treat an error as "unknown", not as fatal.
func ReadBundle(dir string) (*Bundle, error) {
	if dir == "" {
		return nil, errors.New("the OCI state names no bundle")
	}
	data, err := safefile.Read(filepath.Join(dir, "config.json"), safefile.MaxBundle, safefile.NoFollow)
	if err != nil {
		return nil, err
	}
	var spec bundleSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
	}
	b := &Bundle{}
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				b.NetnsPath = ns.Path
			}
		}
	}
	if spec.Process != nil && spec.Process.Capabilities != nil {
		c := spec.Process.Capabilities
		for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Ambient} {
			for _, capName := range set {
				if !slices.Contains(b.Capabilities, capName) {
					b.Capabilities = append(b.Capabilities, capName)
				}
			}
		}
	}
	return b, nil
}

// DangerousCaps are the capabilities with which a workload can get past the
// fence: NET_ADMIN removes the rules, NET_RAW sends through packet sockets,
// and, where the fence lets some uids through (allowUids), SETUID becomes
// one of them.
func (b *Bundle) DangerousCaps(allowUids bool) []string {
	dangerous := []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}
	if allowUids {
		dangerous = append(dangerous, "CAP_SETUID")
	}
	var out []string
	for _, c := range dangerous {
		if slices.Contains(b.Capabilities, c) {
			out = append(out, c)
		}
	}
	return out
}
