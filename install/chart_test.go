// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	k8syaml "sigs.k8s.io/yaml"
)

// What the chart adds that the manifests do not have: labels saying who
// made an object, and the pod annotation that rolls the pods when the
// config changes.
var (
	chartOnlyLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
	chartOnlyAnnotations = []string{"checksum/config"}
)

// The Helm chart renders, with its default values, the objects of
// install/kubernetes/*.yaml, which the containerd end to end runs: the chart
// cannot drift from what is proven. The monitor's DaemonSet only when
// monitor.enabled.
func TestChartRendersTheManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: it runs helm, built from the Go module proxy (make chart-template)")
	}
	for _, tool := range []string{"make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	// helm lint --strict renders every template, NOTES.txt too.
	if out, err := exec.Command("make", "-s", "-C", "..", "--no-print-directory", "chart-lint").CombinedOutput(); err != nil {
		t.Errorf("make chart-lint: %v\n%s", err, out)
	}
	manifests := decodeObjects(t, "install/kubernetes/bypass-hook.yaml", readFile(t, "kubernetes/bypass-hook.yaml"))
	monitor := decodeObjects(t, "install/kubernetes/bypass-hook-monitor.yaml", readFile(t, "kubernetes/bypass-hook-monitor.yaml"))
	// The image named once, at `&image` in the manifests and in the chart's
	// values: at the defaults a container that names its own image would
	// compare equal.
	const repo, tag = "registry.invalid/team/bypass-hook", "v9.9.9"
	manifestsAt := decodeObjects(t, "install/kubernetes/bypass-hook.yaml with &image set",
		setImageOnce(t, readFile(t, "kubernetes/bypass-hook.yaml"), repo+":"+tag))
	monitorAt := decodeObjects(t, "install/kubernetes/bypass-hook-monitor.yaml with &image set",
		setImageOnce(t, readFile(t, "kubernetes/bypass-hook-monitor.yaml"), repo+":"+tag))
	imageFlags := "--set image.repository=" + repo + ",image.tag=" + tag

	for _, tc := range []struct {
		name  string
		flags string
		want  map[string]map[string]any
	}{
		{"defaults", "", manifests},
		{"monitor.enabled", "--set monitor.enabled=true", merge(manifests, monitor)},
		{"image", imageFlags + ",monitor.enabled=true", merge(manifestsAt, monitorAt)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeObjects(t, "the chart", chartTemplate(t, tc.flags))
			for key, obj := range got {
				stripChartOnly(obj)
				want, ok := tc.want[key]
				if !ok {
					t.Errorf("the chart renders %s, which install/kubernetes does not have", key)
					continue
				}
				if d := cmp.Diff(want, obj); d != "" {
					t.Errorf("%s: the chart (+) differs from install/kubernetes (-):\n%s", key, d)
				}
			}
			for key := range tc.want {
				if _, ok := got[key]; !ok {
					t.Errorf("the chart does not render %s", key)
				}
			}
		})
	}
}

// setImageOnce names image at the manifest's one `&image`, as its header
// tells an operator to.
func setImageOnce(t *testing.T, data []byte, image string) []byte {
	t.Helper()
	anchor := regexp.MustCompile(`(?m)(image: &image )\S+`)
	if n := len(anchor.FindAll(data, -1)); n != 1 {
		t.Fatalf("the manifest has %d `image: &image` anchors, want 1", n)
	}
	return anchor.ReplaceAll(data, []byte("${1}"+image))
}

// chartTemplate runs `make chart-template` with HELM_FLAGS.
func chartTemplate(t *testing.T, flags string) []byte {
	t.Helper()
	cmd := exec.Command("make", "-s", "-C", "..", "--no-print-directory", "chart-template", "HELM_FLAGS="+flags)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make chart-template HELM_FLAGS=%q: %v\n%s", flags, err, stderr.String())
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var yamlDocSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeObjects decodes a multi-document YAML stream into generic objects
// keyed by kind/namespace/name. A ConfigMap's config.yaml is decoded too,
// so that its comments and key order do not count.
func decodeObjects(t *testing.T, what string, data []byte) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, doc := range yamlDocSep.Split(string(data), -1) {
		var obj map[string]any
		if err := k8syaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, doc)
		}
		if obj == nil {
			continue // comments only
		}
		meta, _ := obj["metadata"].(map[string]any)
		key := fmt.Sprintf("%v %v/%v", obj["kind"], meta["namespace"], meta["name"])
		if _, dup := objs[key]; dup {
			t.Fatalf("%s: %s twice", what, key)
		}
		if obj["kind"] == "ConfigMap" {
			data, _ := obj["data"].(map[string]any)
			for k, v := range data {
				if s, ok := v.(string); ok && strings.HasSuffix(k, ".yaml") {
					var parsed any
					if err := k8syaml.Unmarshal([]byte(s), &parsed); err != nil {
						t.Fatalf("%s: %s %s: %v", what, key, k, err)
					}
					data[k] = parsed
				}
			}
		}
		objs[key] = normalizeNumbers(obj).(map[string]any)
	}
	return objs
}

// normalizeNumbers makes every number a float64, as JSON decodes it, so
// that 9723 from a template and 9723 from a manifest compare equal.
func normalizeNumbers(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func stripChartOnly(obj map[string]any) {
	if meta, ok := obj["metadata"].(map[string]any); ok {
		deleteKeys(meta, "labels", chartOnlyLabels)
	}
	spec, _ := obj["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	if meta, ok := tmpl["metadata"].(map[string]any); ok {
		deleteKeys(meta, "annotations", chartOnlyAnnotations)
	}
}

func deleteKeys(meta map[string]any, field string, keys []string) {
	m, ok := meta[field].(map[string]any)
	if !ok {
		return
	}
	for k := range m {
		if slices.Contains(keys, k) {
			delete(m, k)
		}
	}
	if len(m) == 0 {
		delete(meta, field)
	}
}

func merge(a, b map[string]map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
