// SPDX-License-Identifier: Apache-2.0

package config

import (
	"net/netip"
	"strings"
	"testing"
)

// A policy is the config's with the container's narrowing applied: Narrowed
// of a decision's narrowing gives the decision's policy back, so a fence
// can be brought to a new config by its narrowing alone.
func TestNarrowedIsDecide(t *testing.T) {
	cfgs := []string{
		twoProxies,
		twoProxies + "mode: audit\n",
		twoProxies + "trustAnnotations: true\n",
		twoProxies + "selection: annotated\nallow: [{cidr: 10.96.0.10/32, ports: [53]}]\n",
	}
	anns := []map[string]string{
		nil,
		{AnnEnabled: "true"},
		{AnnEnabled: "true", AnnMode: "enforce"},
		{AnnEnabled: "true", AnnMode: "audit"},
		{AnnEnabled: "true", AnnProxies: "[2001:db8::1]:3128"},
		{AnnEnabled: "true", AnnProxies: "[2001:db8::1]:3128, 198.51.100.1:3128", AnnMode: "enforce"},
		{AnnEnabled: "true", AnnProxies: "198.51.100.1:3128,[2001:db8::1]:3128"},
	}
	n := 0
	for _, y := range cfgs {
		cfg := mustParse(t, y)
		for _, ann := range anns {
			d, err := cfg.Decide(ann)
			if err != nil || !d.Fence {
				continue
			}
			n++
			p, err := cfg.Narrowed(d.Narrowing)
			if err != nil || p.Digest() != d.Policy.Digest() {
				t.Errorf("config %q, annotations %v: Narrowed(%+v) = %+v, %v; Decide gave %+v", y, ann, d.Narrowing, p, err, d.Policy)
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d decisions fenced: the table tests too little", n)
	}
}

// What the annotations set is recorded as they set it, even where it equals
// the config's: a mode or proxy list the container named stays named when
// the config changes.
func TestDecideNarrowing(t *testing.T) {
	cfg := mustParse(t, twoProxies)
	for _, tc := range []struct {
		ann  map[string]string
		want Narrowing
	}{
		{nil, Narrowing{}},
		{map[string]string{AnnEnabled: "true"}, Narrowing{}},
		{map[string]string{AnnMode: "enforce"}, Narrowing{Mode: "enforce"}},
		{map[string]string{AnnProxies: "[2001:db8::1]:3128,198.51.100.1:3128"}, Narrowing{Proxies: []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.1:3128"), netip.MustParseAddrPort("[2001:db8::1]:3128")}}},
	} {
		d, err := cfg.Decide(tc.ann)
		if err != nil || !d.Narrowing.Equal(tc.want) {
			t.Errorf("annotations %v: narrowing %+v, %v; want %+v", tc.ann, d.Narrowing, err, tc.want)
		}
	}
}

// Under a changed config a narrowing is held to what annotations may ask.
func TestNarrowedUnderAChangedConfig(t *testing.T) {
	v4 := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3128")}
	for _, tc := range []struct {
		name, cfg string
		n         Narrowing
		errHas    string // "" for a policy
		mode      string
	}{
		{"allow added", twoProxies + "allow: [{cidr: 10.0.0.0/8}]\n", Narrowing{}, "", "enforce"},
		{"proxy still configured", "proxies: ['198.51.100.1:3128']\n", Narrowing{Proxies: v4}, "", "enforce"},
		{"proxy gone from the config", "proxies: ['[2001:db8::1]:3128']\n", Narrowing{Proxies: v4}, "198.51.100.1:3128", ""},
		{"proxy gone, trusted", "proxies: ['[2001:db8::1]:3128']\ntrustAnnotations: true\n", Narrowing{Proxies: v4}, "", "enforce"},
		{"audit asked, config now enforce", twoProxies, Narrowing{Mode: "audit"}, "mode audit", ""},
		{"audit asked, config audit", twoProxies + "mode: audit\n", Narrowing{Mode: "audit"}, "", "audit"},
		{"enforce asked, config now audit", twoProxies + "mode: audit\n", Narrowing{Mode: "enforce"}, "", "enforce"},
		{"config now audit, no narrowing", twoProxies + "mode: audit\n", Narrowing{}, "", "audit"},
		{"no proxies any more", "", Narrowing{}, "proxies", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := mustParse(t, tc.cfg).Narrowed(tc.n)
			switch {
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Errorf("want an error naming %q, got %v (%+v)", tc.errHas, err, p)
			case tc.errHas == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.errHas == "" && p.Mode != tc.mode:
				t.Errorf("mode %s, want %s", p.Mode, tc.mode)
			}
		})
	}
}
