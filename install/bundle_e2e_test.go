// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// reloadSpec reads the bundle's config.json back into b.Spec: testnet's
// Create writes b.Spec out again, and it must carry what `install bundle`
// wrote.
func reloadSpec(t *testing.T, b *testnet.Bundle) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	b.Spec = &spec
}

// A runc bundle patched by `install bundle` fences its container; runc
// delete runs poststop, which takes the fence out of the namespace (a
// namespace the test made, which outlives the container); after
// `install bundle --remove` the next container is not fenced.
func TestBundleWithRunc(t *testing.T) {
	requireHookBin(t)
	lab := testnet.NewLab(t)
	client := lab.AddClient(t)
	cfgPath, stateDir, hookLog := labConfig(t, lab, "")
	b := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: client.Path})

	out, err := cli(t, "install", "bundle", b.Dir, "--binary", hookBin, "--config", cfgPath)
	if err != nil || !strings.Contains(out, "added the hooks") {
		t.Fatalf("install bundle: %v\n%s", err, out)
	}
	if out, err := cli(t, "install", "bundle", b.Dir, "--binary", hookBin, "--config", cfgPath); err != nil || !strings.Contains(out, "nothing to change") {
		t.Errorf("install bundle, twice: %v\n%s", err, out)
	}
	reloadSpec(t, b)
	if h := b.Spec.Hooks; h == nil || len(h.CreateRuntime) != 1 || len(h.Poststop) != 1 {
		t.Fatalf("hooks in config.json: %+v", b.Spec.Hooks)
	}

	id := testnet.RandName("bh-bundle-")
	if err := b.Create(t, id); err != nil {
		hl, _ := os.ReadFile(hookLog)
		t.Fatalf("%v\nhook log:\n%s", err, hl)
	}
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	if _, ok := rulesOf(t, client.Netns); !ok {
		hl, _ := os.ReadFile(hookLog)
		t.Fatalf("no fence in the container's namespace after runc create; hook log:\n%s", hl)
	}
	testnet.ExpectFenced(t, client.Netns, lab)
	// The workload itself is refused too, not only the test's probes.
	if out, err := b.Exec(t, "nc", "-w", "3", strings.Split(lab.TCPV4, ":")[0], "9090"); err == nil || !strings.Contains(out, "refused") {
		t.Errorf("nc from inside the container: %v; want connection refused:\n%s", err, out)
	}
	if owners := recordOwners(t, stateDir); len(owners) != 1 || owners[0] != id {
		t.Errorf("records name %v, want [%s]", owners, id)
	}

	if err := b.Delete(t); err != nil {
		t.Fatal(err)
	}
	if rules, ok := rulesOf(t, client.Netns); ok {
		t.Errorf("the fence stayed after runc delete (poststop):\n%s", rules)
	}
	if owners := recordOwners(t, stateDir); len(owners) != 0 {
		t.Errorf("records left after poststop: %v", owners)
	}
	testnet.ExpectOpen(t, client.Netns, lab)

	if out, err := cli(t, "install", "bundle", b.Dir, "--remove"); err != nil || !strings.Contains(out, "removed the hooks") {
		t.Fatalf("install bundle --remove: %v\n%s", err, out)
	}
	reloadSpec(t, b)
	if b.Spec.Hooks != nil {
		t.Fatalf("hooks left in config.json: %+v", b.Spec.Hooks)
	}
	if err := b.Create(t, testnet.RandName("bh-unhooked-")); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t); err != nil {
		t.Fatal(err)
	}
	if rules, ok := rulesOf(t, client.Netns); ok {
		t.Errorf("fenced without the hooks:\n%s", rules)
	}
	testnet.ExpectOpen(t, client.Netns, lab)
}
