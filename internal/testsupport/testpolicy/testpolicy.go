// SPDX-License-Identifier: Apache-2.0

// Package testpolicy gives tests a fence policy from a few lines of config.
package testpolicy

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
)

// Policy is the policy that config y decides for a container without
// annotations; it fails the test when y selects nothing.
func Policy(t *testing.T, y string) config.Policy {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	d, err := cfg.Decide(nil)
	if err != nil || !d.Fence {
		t.Fatalf("decide: %v %+v", err, d)
	}
	return d.Policy
}

// Base is a config with proxies, allow entries, DNS and an allowed uid in
// both families.
const Base = `
proxies: ['198.51.100.1:3128', '[2001:db8::1]:3128']
allow: [{cidr: 10.96.0.0/16, ports: [443, 8443], protocol: tcp}, {cidr: 2001:db8:9::/48}, {cidr: 10.1.0.0/16, ports: [7]}]
dns: [10.96.0.10, 2001:db8::53]
allowUids: [1337]
`
