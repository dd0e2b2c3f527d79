// SPDX-License-Identifier: Apache-2.0

package wrapper

import (
	"bytes"
	"encoding/json"
	"testing"
)

// addHooks edits a config.json that the container's creator shaped (its
// environment, its annotations, whatever keys the engine wrote): on any
// input it either refuses, or returns a JSON object that keeps every other
// key as it was and has bypass-hook's hook exactly once in createRuntime
// and in poststop, and editing that again changes nothing.
func FuzzAddHooks(f *testing.F) {
	for _, seed := range []string{
		`{"ociVersion":"1.0.2","process":{"env":["A=1"]}}`,
		`{"hooks":{"createRuntime":[{"path":"/usr/bin/other"}],"poststop":null},"annotations":{"k":"v"}}`,
		`{"hooks":{"createRuntime":[{"path":"/opt/x/bypass-hook-oci","args":["x"]}]}}`,
		`{"hooks":null,"annotations":null,"x":[1,{"y":2}]}`,
		`{"hooks":{"createRuntime":{}}}`,
		`[]`, `null`, `{"annotations":{"a":1}}`,
	} {
		f.Add([]byte(seed))
	}
	ann := map[string]string{"bypass-hook.io/enabled": "true"}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := addHooks(data, ann, testHooks)
		if err != nil {
			return
		}
		var before, after map[string]json.RawMessage
		if err := json.Unmarshal(data, &before); err != nil {
			t.Fatalf("accepted input that is not a JSON object: %q", data)
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("wrote invalid JSON %q: %v", out, err)
		}
		for k, v := range before {
			if k == "hooks" || k == "annotations" {
				continue
			}
			// Kept as written, but for white space.
			var want bytes.Buffer
			if err := json.Compact(&want, v); err != nil || want.String() != string(after[k]) {
				t.Fatalf("key %q changed from %s to %s", k, v, after[k])
			}
		}
		var hooks map[string]json.RawMessage
		if err := json.Unmarshal(after["hooks"], &hooks); err != nil {
			t.Fatalf("hooks written as %s: %v", after["hooks"], err)
		}
		for _, stage := range []string{"createRuntime", "poststop"} {
			var list []Hook
			if err := json.Unmarshal(hooks[stage], &list); err != nil {
				t.Fatalf("hooks.%s written as %s: %v", stage, hooks[stage], err)
			}
			n := 0
			for _, h := range list {
				if isHook(h.Path, testHooks.Binary) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%s has bypass-hook %d times: %s", stage, n, after["hooks"])
			}
		}
		again, changed, err := addHooks(out, ann, testHooks)
		if err != nil || changed || string(again) != string(out) {
			t.Fatalf("a second edit changed %s (changed=%v, err=%v)", out, changed, err)
		}
	})
}
