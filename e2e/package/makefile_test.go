// SPDX-License-Identifier: Apache-2.0

package packagetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// The binaries carry `git describe` of the tree they were built from:
// `make` after a commit that changes no Go file builds them again, so that
// `bypass-hook --version` names the commit the package is named after. The
// test builds in a clone of the repository (with this tree's Makefile), then
// commits there and builds again.
func TestVersionFollowsCommits(t *testing.T) {
	for _, tool := range []string{"git", "make", "go"} {
		if _, err := testnet.Tool(tool); err != nil {
			if os.Getenv("BYPASS_HOOK_E2E_REQUIRE") == "1" {
				t.Fatal(err)
			}
			t.Skipf("skipping: %v", err)
		}
	}
	clone := filepath.Join(t.TempDir(), "clone")
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "BYPASS_HOOK_CONFIG=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(repo, "git", "clone", "--quiet", "--no-hardlinks", ".", clone)
	makefile, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clone, "Makefile"), makefile, 0o644); err != nil {
		t.Fatal(err)
	}
	run(clone, "git", "commit", "--quiet", "--allow-empty", "-am", "the Makefile under test")

	version := func() string {
		t.Helper()
		run(clone, "make", "--no-print-directory", "bin/bypass-hook")
		got := run(clone, "bin/bypass-hook", "--version")
		want := run(clone, "git", "describe", "--always", "--dirty")
		if !strings.HasPrefix(got, "bypass-hook "+want+" ") {
			t.Errorf("bypass-hook --version says %q at %s", got, want)
		}
		return got
	}
	first := version()
	run(clone, "git", "commit", "--quiet", "--allow-empty", "-m", "a commit that changes no source")
	if second := version(); second == first {
		t.Errorf("make after a commit left the version at %q", second)
	}
}

// `make install` says what the package's postinst says: with the default
// selection: all, naming the proxies fences every podman and CRI-O
// container, and how to begin with annotated ones instead.
func TestMakeInstallSaysWhatItFences(t *testing.T) {
	for _, tool := range []string{"make", "go"} {
		if _, err := testnet.Tool(tool); err != nil {
			if os.Getenv("BYPASS_HOOK_E2E_REQUIRE") == "1" {
				t.Fatal(err)
			}
			t.Skipf("skipping: %v", err)
		}
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", repo, "--no-print-directory", "install", "DESTDIR="+dest)
	cmd.Env = append(os.Environ(), "BYPASS_HOOK_CONFIG=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install DESTDIR=%s: %v\n%s", dest, err, out)
	}
	for _, want := range []string{"EVERY podman and CRI-O container", "selection: all", "selection: annotated", "bypass-hook install hooks-dir"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make install does not say %q:\n%s", want, out)
		}
	}
}
