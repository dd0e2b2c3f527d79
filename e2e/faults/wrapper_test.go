// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// wrapperKills is how many runs of the runtime wrapper the sweep kills.
const wrapperKills = 60

// The runtime wrapper (bypass-hook-runtime, the built binary) SIGKILLed at
// any moment of a create, while it writes bypass-hook's hooks into the
// bundle's config.json: config.json is always whole JSON, either as it was
// or with each hook once, never twice; the engine's next create through
// the wrapper (a retry) ends with each hook exactly once. The spec is large
// (a few hundred KB of environment) so that the write takes several steps.
func TestWrapperKilled(t *testing.T) {
	if hookBin == "" {
		t.Skip("skipping: needs root (the binaries are built only as root)")
	}
	e := newEnv(t, "nftables")
	wrapperBin := filepath.Join(filepath.Dir(hookBin), "bypass-hook-runtime")
	ociHook := testnet.OCIHook(hookBin)
	env := []string{"PATH=/bin"}
	for i := range 3000 {
		env = append(env, fmt.Sprintf("VAR_%d=%s", i, strings.Repeat("x", 100)))
	}
	orig, err := json.Marshal(map[string]any{"ociVersion": "1.0.2", "process": map[string]any{"args": []string{"true"}, "env": env}})
	if err != nil {
		t.Fatal(err)
	}
	newBundle := func() string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), orig, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	wrapper := func(dir string) *exec.Cmd {
		return exec.Command(wrapperBin, "--bypass-hook-config", e.cfgPath, "--bypass-hook-runtime=/bin/true",
			"create", "--bundle", dir, testnet.RandName("wrapped-"))
	}
	// hooks counts bypass-hook's entries per stage in a bundle's config.json,
	// failing the test where it is not whole JSON.
	hooks := func(dir string, what string) (create, poststop int, ok bool) {
		data, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Errorf("%s: config.json: %v", what, err)
			return 0, 0, false
		}
		var s struct {
			Process struct{ Env []string } `json:"process"`
			Hooks   map[string][]struct {
				Path string `json:"path"`
			} `json:"hooks"`
		}
		if err := json.Unmarshal(data, &s); err != nil {
			t.Errorf("%s: config.json is not whole JSON (%d bytes; %d before): %v", what, len(data), len(orig), err)
			return 0, 0, false
		}
		if len(s.Process.Env) != len(env) {
			t.Errorf("%s: config.json has %d environment variables, want %d", what, len(s.Process.Env), len(env))
			return 0, 0, false
		}
		for _, h := range s.Hooks["createRuntime"] {
			if h.Path == ociHook {
				create++
			}
		}
		for _, h := range s.Hooks["poststop"] {
			if h.Path == ociHook {
				poststop++
			}
		}
		return create, poststop, true
	}

	var took []time.Duration
	for range 5 {
		dir := newBundle()
		start := time.Now()
		if out, err := wrapper(dir).CombinedOutput(); err != nil {
			t.Fatalf("the wrapper's create: %v\n%s", err, out)
		}
		took = append(took, time.Since(start))
		if c, p, _ := hooks(dir, "a whole create"); c != 1 || p != 1 {
			t.Fatalf("a whole create through the wrapper wrote %d createRuntime and %d poststop hooks, want 1 and 1", c, p)
		}
	}
	span := median(took)
	t.Logf("a whole create through the wrapper takes up to %s here; kills are swept across 0-%s", span, span)

	var killed, asItWas, withHooks, broken, leftTmp int
	for i := range wrapperKills {
		d := time.Duration(rand.Int64N(int64(span)))
		if i%2 == 1 {
			d = span * time.Duration(i) / wrapperKills
		}
		dir := newBundle()
		if !e.killAfter(wrapper(dir), d) {
			continue
		}
		killed++
		what := fmt.Sprintf("wrapper killed after %s", d)
		c, p, ok := hooks(dir, what)
		switch {
		case !ok:
			broken++
		case c == 0 && p == 0:
			asItWas++
		case c == 1 && p == 1:
			withHooks++
		default:
			broken++
			t.Errorf("%s: config.json has %d createRuntime and %d poststop hooks, want none or one of each", what, c, p)
		}
		entries, _ := os.ReadDir(dir)
		leftTmp += len(entries) - 1
		if out, err := wrapper(dir).CombinedOutput(); err != nil {
			t.Fatalf("%s, the next create through it: %v\n%s", what, err, out)
		}
		if c, p, _ := hooks(dir, what+", then run again"); c != 1 || p != 1 {
			t.Errorf("%s, then run again: %d createRuntime and %d poststop hooks, want 1 and 1", what, c, p)
		}
	}
	t.Logf("%d wrappers killed mid-way: config.json as it was %d times, with each hook once %d times, broken %d times; each completed by the next run; %d temporary files left in bundles",
		killed, asItWas, withHooks, broken, leftTmp)
	if killed < wrapperKills/4 {
		t.Errorf("only %d of %d kills came before the wrapper's end: the sweep did not sweep", killed, wrapperKills)
	}
}
