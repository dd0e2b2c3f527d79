// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/bypass-hook/bypass-hook/config"
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

// The chart's values.schema.json names every key of the config, as the
// config's types do: a key it lacks would be refused at helm install, one
// it has that the config lacks would pass helm and fail on the nodes. Each
// value of its enumerations is one the config takes.
func TestChartSchemaMatchesConfig(t *testing.T) {
	var schema struct {
		Definitions struct {
			Config schemaObject `json:"config"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(readFile(t, "../deploy/helm/bypass-hook/values.schema.json"), &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	cfg := schema.Definitions.Config
	compareKeys(t, "config", cfg.Properties, reflect.TypeFor[config.Config]())
	compareKeys(t, "config.log", cfg.Properties["log"].Properties, reflect.TypeFor[config.Log]())
	compareKeys(t, "config.nri", cfg.Properties["nri"].Properties, reflect.TypeFor[config.NRI]())
	compareKeys(t, "config.allow[]", cfg.Properties["allow"].Items.Properties, reflect.TypeFor[config.Allow]())
	for key, p := range cfg.Properties {
		for _, v := range p.Enum {
			y := fmt.Sprintf("proxies: ['198.51.100.1:3128']\n%s: %q\n", key, v)
			if _, err := config.Parse([]byte(y)); err != nil {
				t.Errorf("the schema allows %s: %q, which the config refuses: %v", key, v, err)
			}
		}
	}
}

type schemaObject struct {
	Properties map[string]schemaObject `json:"properties"`
	Items      *schemaObject           `json:"items"`
	Enum       []any                   `json:"enum"`
}

func compareKeys(t *testing.T, where string, props map[string]schemaObject, typ reflect.Type) {
	t.Helper()
	want := map[string]bool{}
	for f := range typ.Fields() {
		if key := strings.Split(f.Tag.Get("yaml"), ",")[0]; key != "" && key != "-" {
			want[key] = true
			if _, ok := props[key]; !ok {
				t.Errorf("values.schema.json: %s has no key %s (%s.%s): helm would refuse it", where, key, typ.Name(), f.Name)
			}
		}
	}
	for key := range props {
		if !want[key] {
			t.Errorf("values.schema.json: %s has a key %s that the config does not know", where, key)
		}
	}
}

// helm template (as install and upgrade) refuses values the nodes would
// refuse: a misspelt key, a proxy given as a host name, a value out of its
// set. A config it takes is one the hook takes.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: it runs helm, built from the Go module proxy (make chart-template)")
	}
	for _, tool := range []string{"make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	for _, tc := range []struct {
		name, values, wantErr string
	}{
		{"a config that fences", `config:
  proxies: ["198.51.100.1:3128", "[2001:db8::1]:3128"]
  allow: [{cidr: 10.96.0.10/32, ports: [53], protocol: udp}, {cidr: "2001:db8::/64"}]
  dns: [10.96.0.10, "2001:db8::53"]
  allowUids: [1337]
  mode: audit
  selection: all
  failure: open
  log: {target: nflog, group: 7231, prefix: bypass, rate: 5/second, burst: 10, required: true}
  nri: {excludeNamespaces: [kube-system, monitoring]}
`, ""},
		{"a misspelt config key", "config:\n  selecton: all\n", "selecton"},
		{"a proxy that is a host name", "config:\n  proxies: [proxy.example:3128]\n", "/config/proxies/0"},
		{"a proxy without a port", "config:\n  proxies: [198.51.100.1]\n", "/config/proxies/0"},
		{"a selection out of its set", "config:\n  selection: some\n", "/config/selection"},
		{"a port out of range", "config:\n  allow: [{cidr: 10.0.0.0/8, ports: [70000]}]\n", "/config/allow/0/ports/0"},
		{"a misspelt top-level key", "imagePullPolicy: Always\n", "imagePullPolicy"},
		{"a misspelt image key", "image:\n  repository: r\n  tag: t\n  pullpolicy: Always\n", "pullpolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("make", "-s", "-C", "..", "--no-print-directory", "chart-template", "HELM_FLAGS=-f "+file)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("helm template refused good values: %v\n%s", err, stderr.String())
			case tc.wantErr != "" && err == nil:
				t.Fatalf("helm template took values the nodes refuse:\n%s", tc.values)
			case tc.wantErr != "" && !strings.Contains(stderr.String(), tc.wantErr):
				t.Errorf("helm template's error does not name %s:\n%s", tc.wantErr, stderr.String())
			case tc.wantErr == "":
				// What helm renders, the hook takes.
				for key, obj := range decodeObjects(t, "the chart", out) {
					if obj["kind"] != "ConfigMap" {
						continue
					}
					data, _ := obj["data"].(map[string]any)
					y, _ := k8syaml.Marshal(data["config.yaml"])
					if _, err := config.Parse(y); err != nil {
						t.Errorf("%s: the hook refuses the config the chart rendered: %v\n%s", key, err, y)
					}
				}
			}
		})
	}
}
