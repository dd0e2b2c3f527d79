// SPDX-License-Identifier: Apache-2.0

package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/bypass-hook/bypass-hook/internal/fserr"
)

// ContainerdConfig is containerd's config file.
const ContainerdConfig = "/etc/containerd/config.toml"

// PodAnnotations are what the runtime entry lets through from a pod into
// config.json (containerd passes only those its runtime lists, matched as
// shell patterns): bypass-hook's own, and keys that look like a near miss of
// them (a wrong case, a changed separator), so that the hook refuses a typo
// rather than never seeing it.
var PodAnnotations = []string{"bypass-hook.io/*", "*[Bb][Yy][Pp][Aa]*", "*[Bb][Yy][Pp][Aa]*/*", "*[Hh][Oo][Oo][Kk]*/*"}

// The runtime entry is written as a block of its own between these lines,
// so that the operator's file keeps its comments and order and --remove
// takes out exactly what was added.
const (
	containerdBegin = "# BEGIN bypass-hook runtime: written by `bypass-hook install containerd-runtime`, removed by its --remove"
	containerdEnd   = "# END bypass-hook runtime"
)

// ContainerdResult says what a config.toml edit did.
type ContainerdResult struct {
	Changed bool
	Backup  string
	// Table is the TOML table of the runtime entry.
	Table string
	// CRIDisabled: the file disables the CRI plugin, the only reader of
	// the entry.
	CRIDisabled bool
}

// criPlugin is the CRI plugin's table in a config of that version:
// containerd 1.x's version 1 names plugins by their short id.
func criPlugin(version int64) (string, error) {
	switch version {
	case 0, 1:
		return "plugins.cri", nil
	case 2:
		return `plugins."io.containerd.grpc.v1.cri"`, nil
	default:
		return "", fmt.Errorf("config version %d is containerd 2.x's, which has NRI: register the NRI plugin instead (see the README's table of engines)", version)
	}
}

// WriteContainerdRuntime adds the runtime wrapper as the CRI runtime
// bypass-hook to the containerd config at path (made when missing),
// replacing an earlier block of its own; the file as it was is kept as
// FILE.bypass-hook.bak. A bypass-hook runtime that the operator wrote
// elsewhere in the file is refused: TOML cannot define it twice.
func WriteContainerdRuntime(path string, r RuntimeRegistration) (ContainerdResult, error) {
	if err := r.Check(); err != nil {
		return ContainerdResult{}, err
	}
	orig, exists, err := readOptional(path)
	if err != nil {
		return ContainerdResult{}, err
	}
	rest := withoutBlock(orig)
	doc, err := decodeTOML(path, rest)
	if err != nil {
		return ContainerdResult{}, err
	}
	version, _ := doc["version"].(int64)
	if !exists || strings.TrimSpace(rest) == "" {
		rest, version = "version = 2\n", 2
	}
	plugin, err := criPlugin(version)
	if err != nil {
		return ContainerdResult{}, fmt.Errorf("%s: %w", path, err)
	}
	key := criKey(version)
	if _, ok := lookup(doc, append(key, "containerd", "runtimes", RuntimeName)); ok {
		return ContainerdResult{}, fmt.Errorf("%s already defines the runtime %s outside bypass-hook's block: remove that table first", path, RuntimeName)
	}
	table := plugin + ".containerd.runtimes." + RuntimeName
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n[%s]\n  runtime_type = \"io.containerd.runc.v2\"\n  pod_annotations = %s\n", containerdBegin, table, tomlList(PodAnnotations))
	fmt.Fprintf(&b, "[%s.options]\n  BinaryName = %s\n", table, strconv.Quote(r.Binary))
	// The wrapper's containers run as runc's do: the same cgroup driver
	// and the same state directory.
	runcOptions := append(key, "containerd", "runtimes", "runc", "options")
	if v, ok := lookup(doc, append(runcOptions, "SystemdCgroup")); ok {
		if on, isBool := v.(bool); isBool {
			fmt.Fprintf(&b, "  SystemdCgroup = %t\n", on)
		}
	}
	if v, ok := lookup(doc, append(runcOptions, "Root")); ok {
		if root, isString := v.(string); isString && root != "" {
			fmt.Fprintf(&b, "  Root = %s\n", strconv.Quote(root))
		}
	}
	b.WriteString(containerdEnd + "\n")
	out := strings.TrimRight(rest, "\n") + "\n\n" + b.String()

	res := ContainerdResult{Table: table, CRIDisabled: criDisabled(doc)}
	check, err := decodeTOML(path, out)
	if err != nil {
		return res, fmt.Errorf("the edit would break %s: %w", path, err)
	}
	if _, ok := lookup(check, append(key, "containerd", "runtimes", RuntimeName, "options", "BinaryName")); !ok {
		return res, fmt.Errorf("the edit of %s does not read back as the runtime %s", path, RuntimeName)
	}
	if out == orig {
		return res, nil
	}
	return writeWithBackup(path, orig, exists, out, res)
}

// RemoveContainerdRuntime takes bypass-hook's block out of the containerd
// config at path. Where nothing else changed since the install, the file is
// as it was to the byte: the backup's text (the install trims the blank
// lines at its end and makes "version = 2" of an empty file), or no file
// where the install made it.
func RemoveContainerdRuntime(path string) (ContainerdResult, error) {
	orig, exists, err := readOptional(path)
	if err != nil || !exists {
		return ContainerdResult{}, err
	}
	out := withoutBlock(orig)
	if out == orig {
		return ContainerdResult{}, nil
	}
	if _, err := decodeTOML(path, out); err != nil {
		return ContainerdResult{}, fmt.Errorf("the removal would break %s: %w", path, err)
	}
	before, hadBackup, err := readOptional(path + ".bypass-hook.bak")
	if err != nil {
		return ContainerdResult{}, err
	}
	const made = "version = 2\n"                                        // what the install starts an empty file with
	hadBackup = hadBackup && !strings.Contains(before, containerdBegin) // one of a file with the block says nothing of before
	switch {
	case hadBackup && (strings.TrimRight(before, "\n") == strings.TrimRight(out, "\n") || strings.TrimSpace(before) == "" && out == made):
		out = before
	case !hadBackup && out == made:
		res, err := writeWithBackup(path, orig, true, out, ContainerdResult{})
		if err != nil {
			return res, err
		}
		return res, os.Remove(path) // the install made it
	}
	return writeWithBackup(path, orig, true, out, ContainerdResult{})
}

// ContainerdRuntime returns the BinaryName of the runtime bypass-hook in
// the containerd config at path, and whether there is one.
func ContainerdRuntime(path string) (binary string, ok bool, err error) {
	data, exists, err := readOptional(path)
	if err != nil || !exists {
		return "", false, err
	}
	doc, err := decodeTOML(path, data)
	if err != nil {
		return "", false, err
	}
	version, _ := doc["version"].(int64)
	rt := append(criKey(version), "containerd", "runtimes", RuntimeName)
	if _, ok := lookup(doc, rt); !ok {
		return "", false, nil
	}
	v, _ := lookup(doc, append(rt, "options", "BinaryName"))
	binary, _ = v.(string)
	return binary, true, nil
}

func criKey(version int64) []string {
	if version >= 2 {
		return []string{"plugins", "io.containerd.grpc.v1.cri"}
	}
	return []string{"plugins", "cri"}
}

func criDisabled(doc map[string]any) bool {
	list, _ := doc["disabled_plugins"].([]any)
	return slices.ContainsFunc(list, func(v any) bool { return v == "cri" || v == "io.containerd.grpc.v1.cri" })
}

func readOptional(path string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading %s: %w", path, fserr.Cause(err))
	}
	return string(data), true, nil
}

func decodeTOML(path, data string) (map[string]any, error) {
	var doc map[string]any
	if _, err := toml.Decode(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w (containerd cannot read it either)", path, err)
	}
	return doc, nil
}

// withoutBlock is data without bypass-hook's block and the blank line
// before it.
func withoutBlock(data string) string {
	start := strings.Index(data, containerdBegin)
	if start < 0 {
		return data
	}
	end := strings.Index(data[start:], containerdEnd)
	if end < 0 {
		return data
	}
	end += start + len(containerdEnd)
	if end < len(data) && data[end] == '\n' {
		end++
	}
	head := strings.TrimRight(data[:start], "\n")
	if head != "" {
		head += "\n"
	}
	return head + data[end:]
}

func tomlList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

func writeWithBackup(path, orig string, exists bool, out string, res ContainerdResult) (ContainerdResult, error) {
	mode := os.FileMode(0o644)
	if exists {
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
		res.Backup = path + ".bypass-hook.bak"
		if err := writeFileAtomic(res.Backup, []byte(orig), mode); err != nil {
			return res, fmt.Errorf("keeping a backup of %s: %w", path, err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return res, err
	}
	res.Changed = true
	return res, writeFileAtomic(path, []byte(out), mode)
}
