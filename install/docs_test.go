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

// readmeSection is the text of the README from the heading to the next
// heading of the same level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", heading)
	}
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n"+strings.Fields(heading)[0]+" "); j >= 0 {
		s = s[:j]
	}
	return s
}

// The README's Commands section names every command `bypass-hook help`
// lists: a new user reads the README top down, and a command it leaves out
// (config validate, config default and install state-dir were) is one they
// may never learn of.
func TestReadmeNamesEveryCommand(t *testing.T) {
	requireHookBin(t)
	help, err := cli(t, "help")
	if err != nil {
		t.Fatalf("help: %v\n%s", err, help)
	}
	section := readmeSection(t, "## Commands")
	spans := regexp.MustCompile("`[^`]*`").FindAllString(section, -1)
	listed := regexp.MustCompile(`(?m)^  ([a-z][a-z -]*[a-z])  +\S`)
	n := 0
	for _, m := range listed.FindAllStringSubmatch(help, -1) {
		words := strings.Fields(m[1])
		last := words[len(words)-1]
		n++
		named := false
		for _, sp := range spans {
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(last) + `\b`).MatchString(sp) {
				named = true
				break
			}
		}
		if !named {
			t.Errorf("README.md's Commands section does not name %q (listed by bypass-hook help)", m[1])
		}
	}
	if n < 10 {
		t.Fatalf("found only %d commands in bypass-hook help:\n%s", n, help)
	}
}

// The README's Development layout names every package of the module: a
// package it leaves out (wrapper/, internal/safefile were) is one a new
// contributor does not know to look in.
func TestReadmeLayoutNamesEveryPackage(t *testing.T) {
	section := readmeSection(t, "## Development")
	a := strings.Index(section, "```\n")
	b := strings.Index(section[a+4:], "```")
	if a < 0 || b < 0 {
		t.Fatal("README.md's Development section has no layout block")
	}
	layout := section[a+4 : a+4+b]
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir, _ := filepath.Rel("..", filepath.Dir(path))
		dir = filepath.ToSlash(dir)
		if strings.Contains(layout, dir+"/") {
			return nil
		}
		// A package may be named as a word beside its parent directory:
		// "internal/  safefile (...)", "testsupport/: testnet".
		parent, name := filepath.Dir(dir), filepath.Base(dir)
		word := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`)
		if parent != "." && strings.Contains(layout, filepath.Base(parent)+"/") && word.MatchString(layout) {
			return nil
		}
		t.Errorf("README.md's Development layout does not name the package %s", dir)
		return filepath.SkipDir
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The docs' links to sections (#anchor, file.md#anchor, file.md) lead
// somewhere: an anchor is the heading as GitHub makes it (lower case,
// punctuation dropped, spaces as hyphens), so a renamed heading or a
// mistyped one leaves the reader at the top of the page.
func TestDocsLinksResolve(t *testing.T) {
	docs, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, "../README.md")
	heading := regexp.MustCompile(`(?m)^#+ (.*)$`)
	drop := regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
	anchors := func(path string) (map[string]bool, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		a := map[string]bool{}
		for _, m := range heading.FindAllStringSubmatch(string(data), -1) {
			a[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")] = true
		}
		return a, nil
	}
	link := regexp.MustCompile(`\]\(([\w./-]*\.md)?(?:#([^)\s]+))?\)`)
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := doc
			if m[1] != "" {
				target = filepath.Join(filepath.Dir(doc), m[1])
			}
			a, err := anchors(target)
			if err != nil {
				t.Errorf("%s links to %s, which cannot be read: %v", doc, m[1], err)
				continue
			}
			if m[2] != "" && !a[m[2]] {
				t.Errorf("%s links to %s#%s: no such heading", doc, filepath.Base(target), m[2])
			}
		}
	}
}
