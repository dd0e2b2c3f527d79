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
