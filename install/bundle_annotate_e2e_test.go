// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"os"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// Under selection: annotated, runc gives the hook the bundle's annotations
// and nothing else: a bundle without bypass-hook.io/enabled: "true" starts
// unfenced. `install bundle` says so when it writes the hooks, and
// --annotate opts the bundle in, after which runc's container is fenced.
func TestBundleAnnotatedWithRunc(t *testing.T) {
	requireHookBin(t)
	lab := testnet.NewLab(t)
	client := lab.AddClient(t)
	cfgPath, _, hookLog := labConfig(t, lab, "selection: annotated\n")
	b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: client.Path})

	out, err := cli(t, "install", "bundle", b.Dir, "--binary", hookBin, "--config", cfgPath)
	if err != nil || !strings.Contains(out, "added the hooks") || !strings.Contains(out, "will start UNFENCED") ||
		!strings.Contains(out, "install bundle --annotate "+b.Dir) {
		t.Fatalf("install bundle of a bundle without the annotation: %v\n%s", err, out)
	}
	reloadSpec(t, b)
	if err := b.Create(t, testnet.RandName("bh-unannotated-")); err != nil {
		t.Fatal(err)
	}
	if rules, ok := rulesOf(t, client.Netns); ok {
		t.Fatalf("fenced without the annotation, against what install bundle said:\n%s", rules)
	}
	if err := b.Delete(t); err != nil {
		t.Fatal(err)
	}

	out, err = cli(t, "install", "bundle", "--annotate", b.Dir, "--binary", hookBin, "--config", cfgPath)
	if err != nil || !strings.Contains(out, "added the annotation "+config.AnnEnabled) || strings.Contains(out, "WARNING") {
		t.Fatalf("install bundle --annotate: %v\n%s", err, out)
	}
	reloadSpec(t, b)
	if got := b.Spec.Annotations[config.AnnEnabled]; got != "true" {
		t.Fatalf("annotations in config.json: %v", b.Spec.Annotations)
	}
	if err := b.Create(t, testnet.RandName("bh-annotated-")); err != nil {
		hl, _ := os.ReadFile(hookLog)
		t.Fatalf("%v\nhook log:\n%s", err, hl)
	}
	if _, ok := rulesOf(t, client.Netns); !ok {
		hl, _ := os.ReadFile(hookLog)
		t.Fatalf("not fenced after install bundle --annotate; hook log:\n%s", hl)
	}
	testnet.ExpectFenced(t, client.Netns, lab)
	if err := b.Delete(t); err != nil {
		t.Fatal(err)
	}
}
