// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"strings"
	"testing"
)

func TestDecideEnv(t *testing.T) {
	const annotated = twoProxies + "selection: annotated\n"
	type want struct {
		fence  bool
		mode   string
		env    bool   // the error is an EnvError
		errHas string // "" for no error
		merged map[string]string
	}
	for _, tc := range []struct {
		name string
		cfg  string
		ann  map[string]string
		env  []string
		want want
	}{
		{"nothing under annotated", annotated, nil, []string{"PATH=/bin"}, want{}},
		{"enabled opts in", annotated, nil, []string{"PATH=/bin", "BYPASS_HOOK_ENABLED=true"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{AnnEnabled: "true"}}},
		{"none needed under all", twoProxies, nil, []string{"HOME=/"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{}}},
		{"enabled=false under all widens", twoProxies, nil, []string{"BYPASS_HOOK_ENABLED=false"}, want{env: true, errHas: "selection: all"}},
		{"enabled=false under annotated is nothing", annotated, nil, []string{"BYPASS_HOOK_ENABLED=false"}, want{}},
		{"enabled must be a boolean", annotated, nil, []string{"BYPASS_HOOK_ENABLED=yes"}, want{env: true, errHas: `"true" or "false"`}},
		{"empty value refused", annotated, nil, []string{"BYPASS_HOOK_ENABLED="}, want{env: true, errHas: `"true" or "false"`}},
		{"audit narrows nothing: refused", annotated, nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_MODE=audit"}, want{env: true, errHas: "BYPASS_HOOK_MODE"}},
		{"enforce narrows audit", annotated + "mode: audit\n", nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_MODE=enforce"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{AnnEnabled: "true", AnnMode: "enforce"}}},
		{"proxy subset", annotated, nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_PROXIES=198.51.100.1:3128"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{AnnEnabled: "true", AnnProxies: "198.51.100.1:3128"}}},
		{"proxy outside refused", annotated, nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_PROXIES=198.51.100.9:3128"}, want{env: true, errHas: "subset"}},
		{"lower case is a near miss", annotated, nil, []string{"bypass_hook_enabled=true"}, want{env: true, errHas: "misspelling"}},
		{"mixed case is a near miss", annotated, nil, []string{"Bypass_Hook_Enabled=true"}, want{env: true, errHas: "misspelling"}},
		{"dash is a near miss", annotated, nil, []string{"BYPASS-HOOK_ENABLED=true"}, want{env: true, errHas: "misspelling"}},
		{"no separator is a near miss", annotated, nil, []string{"BYPASSHOOK_ENABLED=true"}, want{env: true, errHas: "misspelling"}},
		{"dropped letter is a near miss", annotated, nil, []string{"BYPAS_HOOK_ENABLED=true"}, want{env: true, errHas: "misspelling"}},
		{"plural is a near miss", annotated, nil, []string{"BYPASS_HOOKS_ENABLED=true"}, want{env: true, errHas: "misspelling"}},
		{"unknown name under the prefix", annotated, nil, []string{"BYPASS_HOOK_ENABLE=true"}, want{env: true, errHas: "not a bypass-hook variable"}},
		{"the config is not the container's", annotated, nil, []string{"BYPASS_HOOK_CONFIG=/tmp/c.yaml"}, want{env: true, errHas: "cannot choose it"}},
		{"unrelated names pass", annotated, nil, []string{"BYPASS_PROXY=1", "HTTP_PROXY=http://198.51.100.1:3128", "HOOK=1", "NO_PROXY=x"}, want{}},
		{"set twice alike", annotated, nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_ENABLED=true"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{AnnEnabled: "true"}}},
		{"set twice differently", annotated, nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_ENABLED=false"}, want{env: true, errHas: "set twice"}},
		{"agrees with the annotation", annotated, map[string]string{AnnEnabled: "true"}, []string{"BYPASS_HOOK_ENABLED=true"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{AnnEnabled: "true"}}},
		{"trustAnnotations does not cover enabled=false", twoProxies + "trustAnnotations: true\n", nil, []string{"BYPASS_HOOK_ENABLED=false"}, want{env: true, errHas: "selection: all"}},
		{"trustAnnotations does not cover audit", annotated + "trustAnnotations: true\n", nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_MODE=audit"}, want{env: true, errHas: "BYPASS_HOOK_MODE"}},
		{"trustAnnotations does not cover other proxies", annotated + "trustAnnotations: true\n", nil, []string{"BYPASS_HOOK_ENABLED=true", "BYPASS_HOOK_PROXIES=198.51.100.9:3128"}, want{env: true, errHas: "subset"}},
		{"trustAnnotations still covers the annotation", twoProxies + "trustAnnotations: true\n", map[string]string{AnnEnabled: "false"}, []string{"HOME=/"}, want{merged: map[string]string{AnnEnabled: "false"}}},
		{"contradicts the annotation", annotated, map[string]string{AnnEnabled: "false"}, []string{"BYPASS_HOOK_ENABLED=true"}, want{env: true, errHas: "contradicts"}},
		{"annotation near miss still refused", annotated, map[string]string{"bypass_hook.io/enabled": "true"}, []string{"BYPASS_HOOK_ENABLED=true"}, want{errHas: "misspelling"}},
		{"other annotations kept", annotated, map[string]string{"io.kubernetes.pod.name": "p"}, []string{"BYPASS_HOOK_ENABLED=true"}, want{fence: true, mode: ModeEnforce, merged: map[string]string{AnnEnabled: "true", "io.kubernetes.pod.name": "p"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.cfg)
			d, merged, err := cfg.DecideEnv(tc.ann, tc.env)
			if tc.want.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want.errHas) {
					t.Fatalf("want an error with %q, got %v", tc.want.errHas, err)
				}
				var ee *EnvError
				var ae *AnnotationError
				if tc.want.env && !errors.As(err, &ee) {
					t.Errorf("want an EnvError, got %T", err)
				}
				if !errors.As(err, &ae) {
					t.Errorf("a refusal on the opt-in must be an AnnotationError (never let through by failure: open), got %T", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if d.Fence != tc.want.fence || d.Policy.Mode != tc.want.mode {
				t.Errorf("fence %v mode %q, want %v %q (%s)", d.Fence, d.Policy.Mode, tc.want.fence, tc.want.mode, d.Reason)
			}
			if tc.want.merged != nil {
				if len(merged) != len(tc.want.merged) {
					t.Errorf("merged %v, want %v", merged, tc.want.merged)
				}
				for k, v := range tc.want.merged {
					if merged[k] != v {
						t.Errorf("merged %v, want %v", merged, tc.want.merged)
					}
				}
			}
		})
	}
}
