// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// AnnotateBundle sets the opt-in, in place of any other spelling of its key
// (the hook refuses two spellings), and keeps everything else, unknown keys
// and the file's mode included; a second run changes nothing.
func TestAnnotateBundle(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	spec := `{"ociVersion":"1.0.2","vendor.example/unknown":{"a":1},"annotations":{"other":"x","Bypass-Hook.IO/Enabled":"false","bypass-hook.io/mode":"audit"}}`
	if err := os.WriteFile(file, []byte(spec), 0o640); err != nil {
		t.Fatal(err)
	}
	if changed, err := install.AnnotateBundle(dir); err != nil || !changed {
		t.Fatalf("AnnotateBundle: changed %v, %v", changed, err)
	}
	got, err := install.BundleAnnotations(dir)
	want := map[string]string{"other": "x", config.AnnEnabled: "true", "bypass-hook.io/mode": "audit"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("annotations %v, %v; want %v", got, err, want)
	}
	data, _ := os.ReadFile(file)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || string(top["vendor.example/unknown"]) == "" || string(top["ociVersion"]) != `"1.0.2"` {
		t.Errorf("the other keys did not survive: %v\n%s", err, data)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	if changed, err := install.AnnotateBundle(dir); err != nil || changed {
		t.Errorf("AnnotateBundle again: changed %v, %v", changed, err)
	}

	// A bundle with no annotations at all gets the key; no bundle is an error.
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "config.json"), []byte(`{"ociVersion":"1.0.2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := install.AnnotateBundle(empty); err != nil || !changed {
		t.Errorf("AnnotateBundle without annotations: changed %v, %v", changed, err)
	}
	if _, err := install.AnnotateBundle(t.TempDir()); err == nil {
		t.Error("AnnotateBundle of a directory without config.json: no error")
	}
}
