// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustParse(t *testing.T, y string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoProxies = "proxies: ['198.51.100.1:3128', '[2001:db8::1]:3128']\n"

func TestDecide(t *testing.T) {
	type want struct {
		fence   bool
		mode    string
		proxies string // comma-joined, sorted
		errType string // "", "annotation", "config"
		errHas  string
	}
	for _, tc := range []struct {
		name string
		cfg  string
		ann  map[string]string
		want want
	}{
		{"all, no annotations", twoProxies, nil, want{fence: true, mode: "enforce", proxies: "198.51.100.1:3128,[2001:db8::1]:3128"}},
		{"all, enabled=true", twoProxies, map[string]string{AnnEnabled: "true"}, want{fence: true, mode: "enforce"}},
		{"all, enabled=false widens", twoProxies, map[string]string{AnnEnabled: "false"}, want{errType: "annotation", errHas: "trustAnnotations"}},
		{"all, enabled=false trusted", twoProxies + "trustAnnotations: true", map[string]string{AnnEnabled: "false"}, want{}},
		{"enabled garbage", twoProxies, map[string]string{AnnEnabled: "yes"}, want{errType: "annotation", errHas: `"yes"`}},
		{"annotated, not annotated", twoProxies + "selection: annotated", nil, want{}},
		{"annotated, enabled=false", twoProxies + "selection: annotated", map[string]string{AnnEnabled: "false"}, want{}},
		{"annotated, enabled=true", twoProxies + "selection: annotated", map[string]string{AnnEnabled: "true"}, want{fence: true, mode: "enforce"}},
		{"annotated, enabled, no proxies", "selection: annotated", map[string]string{AnnEnabled: "true"}, want{errType: "config", errHas: "proxies"}},
		{"all, no proxies", "", nil, want{}},
		{"all, no proxies, enabled=true", "", map[string]string{AnnEnabled: "true"}, want{errType: "config", errHas: "proxies"}},
		{"enforce to audit widens", twoProxies, map[string]string{AnnMode: "audit"}, want{errType: "annotation", errHas: "enforce"}},
		{"enforce to audit trusted", twoProxies + "trustAnnotations: true", map[string]string{AnnMode: "audit"}, want{fence: true, mode: "audit"}},
		{"audit to enforce narrows", twoProxies + "mode: audit", map[string]string{AnnMode: "enforce"}, want{fence: true, mode: "enforce"}},
		{"bad mode", twoProxies, map[string]string{AnnMode: "off"}, want{errType: "annotation", errHas: "off"}},
		{"proxy subset", twoProxies, map[string]string{AnnProxies: "[2001:db8::1]:3128"}, want{fence: true, mode: "enforce", proxies: "[2001:db8::1]:3128"}},
		{"proxy subset, spaces and order", twoProxies, map[string]string{AnnProxies: " [2001:db8::1]:3128 , 198.51.100.1:3128"}, want{fence: true, proxies: "198.51.100.1:3128,[2001:db8::1]:3128", mode: "enforce"}},
		{"proxy not configured", twoProxies, map[string]string{AnnProxies: "198.51.100.9:3128"}, want{errType: "annotation", errHas: "198.51.100.9:3128"}},
		{"proxy other port", twoProxies, map[string]string{AnnProxies: "198.51.100.1:8080"}, want{errType: "annotation", errHas: "subset"}},
		{"proxy not configured, trusted", twoProxies + "trustAnnotations: true", map[string]string{AnnProxies: "198.51.100.9:3128"}, want{fence: true, mode: "enforce", proxies: "198.51.100.9:3128"}},
		{"proxy malformed", twoProxies, map[string]string{AnnProxies: "198.51.100.1"}, want{errType: "annotation", errHas: "port"}},
		{"proxy empty", twoProxies, map[string]string{AnnProxies: " , "}, want{errType: "annotation", errHas: "names no proxy"}},
		{"other annotations ignored", twoProxies, map[string]string{"io.kubernetes.pod.name": "x"}, want{fence: true, mode: "enforce"}},
		{"misspelt annotation", twoProxies + "selection: annotated", map[string]string{"bypass-hook.io/enable": "true"}, want{errType: "annotation", errHas: "bypass-hook.io/enable"}},
		// Keys are matched without regard to case (issue 10, hole 5).
		{"annotated, enabled in capitals", twoProxies + "selection: annotated", map[string]string{"Bypass-Hook.io/enabled": "true"}, want{fence: true, mode: "enforce"}},
		{"annotated, enabled all capitals", twoProxies + "selection: annotated", map[string]string{"BYPASS-HOOK.IO/ENABLED": "true"}, want{fence: true, mode: "enforce"}},
		{"all, disabled in capitals widens", twoProxies, map[string]string{"Bypass-Hook.IO/Enabled": "false"}, want{errType: "annotation", errHas: "trustAnnotations"}},
		{"mode in capitals", twoProxies, map[string]string{"BYPASS-HOOK.IO/MODE": "audit"}, want{errType: "annotation", errHas: "enforce"}},
		{"two spellings agree", twoProxies + "selection: annotated", map[string]string{AnnEnabled: "true", "Bypass-Hook.io/enabled": "true"}, want{fence: true, mode: "enforce"}},
		{"two spellings disagree", twoProxies + "selection: annotated", map[string]string{AnnEnabled: "true", "Bypass-Hook.io/enabled": "false"}, want{errType: "annotation", errHas: "two spellings"}},
		{"misspelt in capitals", twoProxies + "selection: annotated", map[string]string{"Bypass-Hook.io/Enable": "true"}, want{errType: "annotation", errHas: "Bypass-Hook.io/Enable"}},
		// Near misses of the prefix are refused like a misspelt key.
		{"prefix with a dot", twoProxies + "selection: annotated", map[string]string{"bypass-hook.io.enabled": "true"}, want{errType: "annotation", errHas: "misspelling of the prefix"}},
		{"prefix with an underscore", twoProxies + "selection: annotated", map[string]string{"bypass_hook.io/enabled": "true"}, want{errType: "annotation", errHas: "bypass_hook.io/enabled"}},
		{"prefix with a typo", twoProxies + "selection: annotated", map[string]string{"bypas-hook.io/enabled": "true"}, want{errType: "annotation", errHas: "misspelling"}},
		{"near miss under selection all", twoProxies, map[string]string{"Bypass-Hook.IO.enabled": "false"}, want{errType: "annotation", errHas: "misspelling"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.cfg)
			d, err := cfg.Decide(tc.ann)
			var ae *AnnotationError
			var ce *Error
			switch tc.want.errType {
			case "":
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			case "annotation":
				if !errors.As(err, &ae) {
					t.Fatalf("want an AnnotationError, got %v", err)
				}
			case "config":
				if !errors.As(err, &ce) {
					t.Fatalf("want a config Error, got %v", err)
				}
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.want.errHas) {
					t.Errorf("error %q does not say %q", err, tc.want.errHas)
				}
				return
			}
			if d.Fence != tc.want.fence {
				t.Fatalf("fence = %v (%s), want %v", d.Fence, d.Reason, tc.want.fence)
			}
			if !d.Fence {
				if d.Reason == "" {
					t.Error("a container left unfenced needs a reason for the log")
				}
				return
			}
			if d.Policy.Mode != tc.want.mode {
				t.Errorf("mode = %s, want %s", d.Policy.Mode, tc.want.mode)
			}
			if tc.want.proxies != "" {
				var got []string
				for _, p := range d.Policy.Proxies {
					got = append(got, p.String())
				}
				if strings.Join(got, ",") != tc.want.proxies {
					t.Errorf("proxies = %v, want %s", got, tc.want.proxies)
				}
			}
		})
	}
}

func TestDigest(t *testing.T) {
	cfg := mustParse(t, twoProxies)
	a, _ := cfg.Decide(nil)
	b, _ := cfg.Decide(map[string]string{AnnProxies: "[2001:db8::1]:3128,198.51.100.1:3128"})
	if a.Policy.Digest() != b.Policy.Digest() {
		t.Error("the same proxies in another order must give the same digest")
	}
	c, _ := cfg.Decide(map[string]string{AnnProxies: "198.51.100.1:3128"})
	if a.Policy.Digest() == c.Policy.Digest() {
		t.Error("a narrower proxy list must give another digest")
	}
	audit := mustParse(t, twoProxies+"mode: audit")
	d, _ := audit.Decide(nil)
	if a.Policy.Digest() == d.Policy.Digest() {
		t.Error("another mode must give another digest")
	}
	// Decide must not share slices with the config.
	a.Policy.Proxies[0] = netip.MustParseAddrPort("192.0.2.9:1")
	if cfg.ProxyAddrs()[0].String() != "198.51.100.1:3128" {
		t.Error("Decide's policy aliases the config's proxy list")
	}
}

func TestClassifyAnnotationKey(t *testing.T) {
	for _, tc := range []struct {
		key       string
		kind      KeyKind
		canonical string
	}{
		{"bypass-hook.io/enabled", KeyOurs, "bypass-hook.io/enabled"},
		{"Bypass-Hook.io/enabled", KeyOurs, "bypass-hook.io/enabled"},
		{"BYPASS-HOOK.IO/MODE", KeyOurs, "bypass-hook.io/mode"},
		{"bypass-hook.io/whatever", KeyOurs, "bypass-hook.io/whatever"},
		// Separators changed, dropped or added.
		{"bypass-hook.io.enabled", KeyNearMiss, ""},
		{"bypass_hook.io/enabled", KeyNearMiss, ""},
		{"Bypass_Hook_IO/enabled", KeyNearMiss, ""},
		{"bypasshook.io/enabled", KeyNearMiss, ""},
		{"bypass-hook-io/enabled", KeyNearMiss, ""},
		{"bypass.hook.io/enabled", KeyNearMiss, ""},
		{"bypass-hook.io", KeyNearMiss, ""},
		{"bypass-hook/enabled", KeyNearMiss, ""},
		{" bypass-hook.io/enabled", KeyNearMiss, ""},
		// Letters dropped, added, changed or swapped: up to two.
		{"bypas-hook.io/enabled", KeyNearMiss, ""},
		{"bypass-hok.io/enabled", KeyNearMiss, ""},
		{"bypass-hooks.io/enabled", KeyNearMiss, ""},
		{"bypass-hook.oi/enabled", KeyNearMiss, ""},
		{"bpyass-hook.io/enabled", KeyNearMiss, ""},
		{"bypass-h00k.io/enabled", KeyNearMiss, ""},
		{"Bypass-Hook.IO.Enabled", KeyNearMiss, ""},
		// Other people's keys.
		{"io.kubernetes.pod.name", KeyOther, ""},
		{"io.podman.annotations.autoremove", KeyOther, ""},
		{"org.opencontainers.image.title", KeyOther, ""},
		{"kubectl.kubernetes.io/last-applied-configuration", KeyOther, ""},
		{"bypass.io/enabled", KeyOther, ""},
		{"hook.io/enabled", KeyOther, ""},
		{"bypass-proxy.example.com/enabled", KeyOther, ""},
		{"webhook.io/enabled", KeyOther, ""},
		{"", KeyOther, ""},
	} {
		canonical, kind := ClassifyAnnotationKey(tc.key)
		if kind != tc.kind {
			t.Errorf("%q: kind %d, want %d", tc.key, kind, tc.kind)
		}
		if tc.kind == KeyOurs && canonical != tc.canonical {
			t.Errorf("%q: canonical %q, want %q", tc.key, canonical, tc.canonical)
		}
		if got := IsOurAnnotationKey(tc.key); got != (tc.kind != KeyOther) {
			t.Errorf("IsOurAnnotationKey(%q) = %v", tc.key, got)
		}
	}
}
