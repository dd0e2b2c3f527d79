// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/install"
)

// The docs name the command line the registrations write: the lean hook
// binary and its stage. A doc that says they run `bypass-hook create` (the
// CLI) sends a reader looking for the wrong process in ps, in a runtime's
// error or in a bundle's config.json.
func TestDocsNameTheRegisteredHook(t *testing.T) {
	h := install.Registration{Binary: "/usr/bin/" + install.HookBinaryName}.Hook(install.SubCreate)
	registered := filepath.Base(h.Path) + " " + h.Args[len(h.Args)-1] // bypass-hook-oci create
	cliStage := regexp.MustCompile("`" + regexp.QuoteMeta(install.BinaryName) + " (create|poststop|hook)`")

	docs, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, "../README.md")
	named := false
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := cliStage.FindString(line); m != "" {
				t.Errorf("%s:%d says %s; the registrations run %s", doc, i+1, m, strings.Replace(m, install.BinaryName, install.HookBinaryName, 1))
			}
		}
		named = named || strings.Contains(string(data), "`"+registered+"`")
	}
	if !named {
		t.Errorf("no doc names the registered hook `%s`", registered)
	}
}

// The chart's NOTES.txt sends the reader to the doc that holds the fail-open
// choices (which way closes what), not to one that does not.
func TestChartNotesPointToFailOpen(t *testing.T) {
	notes, err := os.ReadFile("../deploy/helm/bypass-hook/templates/NOTES.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(docs/[a-z-]+\.md) says what each way closes`).FindSubmatch(notes)
	if m == nil {
		t.Fatalf("NOTES.txt names no doc for the fail-open choices:\n%s", notes)
	}
	doc, err := os.ReadFile(filepath.Join("..", string(m[1])))
	if err != nil || !strings.Contains(string(doc), "(fail open)") {
		t.Errorf("NOTES.txt points to %s for the fail-open choices, which has no table of them (%v)", m[1], err)
	}
}

// `help install binary` names the file that `install binary` writes: with
// bypass-hook-oci beside the CLI (as make build and the image put it), that
// one.
func TestInstallBinaryHelpNamesItsFile(t *testing.T) {
	requireHookBin(t)
	dir := t.TempDir()
	out, err := cli(t, "install", "binary", dir)
	wrote := filepath.Join(dir, install.HookBinaryName)
	if err != nil || !strings.Contains(out, wrote) {
		t.Fatalf("install binary %s: %v\n%s", dir, err, out)
	}
	if _, err := os.Stat(wrote); err != nil {
		t.Fatal(err)
	}
	help, err := cli(t, "help", "install", "binary")
	if err != nil || !strings.Contains(help, "DIR/"+install.HookBinaryName) {
		t.Errorf("help install binary does not name DIR/%s:\n%s", install.HookBinaryName, help)
	}
	list, _ := cli(t, "help", "install")
	if !strings.Contains(list, "DIR/"+install.HookBinaryName) {
		t.Errorf("help install's summary of binary does not name DIR/%s:\n%s", install.HookBinaryName, list)
	}
}
