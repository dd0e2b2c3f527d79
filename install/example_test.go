// SPDX-License-Identifier: Apache-2.0

package install

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

// The example states the defaults: loaded as it is, it is the defaults.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	cfg, err := config.Parse(ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("the example is not the defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

// Uncommenting the example's items is what a new user does first: it must
// give a valid config that fences, not a YAML error.
func TestExampleConfigUncommented(t *testing.T) {
	item := regexp.MustCompile(`(?m)^#(  - |    )`)
	for _, block := range []string{"proxies", "allow", "dns", "allowUids", "all"} {
		t.Run(block, func(t *testing.T) {
			var out []string
			in := ""
			for _, line := range strings.Split(string(ExampleConfig), "\n") {
				if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#") {
					in = k
				}
				if block == "all" || in == block {
					line = item.ReplaceAllString(line, "$1")
				}
				out = append(out, line)
			}
			text := strings.Join(out, "\n")
			if text == string(ExampleConfig) {
				t.Fatalf("nothing to uncomment in %s", block)
			}
			cfg, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatalf("uncommenting %s: %v\n%s", block, err, text)
			}
			if block == "proxies" && len(cfg.ProxyAddrs()) != 2 {
				t.Errorf("proxies uncommented: %v", cfg.Proxies)
			}
		})
	}
}
