// SPDX-License-Identifier: Apache-2.0

package install

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/config"
)

// CopyBinary copies the executable src to dir, mode 0755, in one rename:
// a hook that is running the old file keeps it, the next one starts the
// new. It is named bypass-hook-oci if that is what it is, else bypass-hook. The Kubernetes DaemonSet uses it to put the hook where
// the node's runtime can run it. It returns the path written.
func CopyBinary(src, dir string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("reading the binary to copy: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("making %s: %w", dir, err)
	}
	name := BinaryName
	if filepath.Base(src) == HookBinaryName {
		name = HookBinaryName
	}
	dst := filepath.Join(dir, name)
	return dst, writeFileAtomic(dst, data, 0o755)
}

// CopyConfig checks the config file src as the hook would (a config the hook
// refuses is never installed) and writes it to dst, mode 0644, in one
// rename. The Kubernetes DaemonSet uses it to put its ConfigMap on the node.
func CopyConfig(src, dst string) error {
	if !filepath.IsAbs(dst) {
		return fmt.Errorf("config destination %q is not an absolute path", dst)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	if _, err := config.Parse(data); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("making %s: %w", filepath.Dir(dst), err)
	}
	return writeFileAtomic(dst, data, 0o644)
}
