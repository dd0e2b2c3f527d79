// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"net/netip"
	"slices"
)

// Narrowing is the part of a policy that a container's own annotations (or
// its CDI device) set: the mode and the proxies, empty where they set
// none. A policy is the config's with its container's narrowing applied, so
// two policies with one narrowing differ only because the config changed,
// and a fence may follow the newest config without widening what the
// container asked for.
type Narrowing struct {
	Mode    string           `json:"mode,omitempty"`
	Proxies []netip.AddrPort `json:"proxies,omitempty"`
}

// Equal reports whether n and o narrow the config alike.
func (n Narrowing) Equal(o Narrowing) bool {
	return n.Mode == o.Mode && slices.Equal(n.Proxies, o.Proxies)
}

// Narrowed is the policy of a fence whose container narrowed the config by
// n, under this config: what `apply` brings a running fence to. It holds n
// to the rules Decide holds annotations to, since the config may have
// changed since: an error says which part of n this config no longer
// allows.
func (c *Config) Narrowed(n Narrowing) (Policy, error) {
	p := c.basePolicy()
	if n.Mode != "" {
		switch {
		case n.Mode != ModeEnforce && n.Mode != ModeAudit:
			return Policy{}, fmt.Errorf("the container asked for mode %q, which is no mode", n.Mode)
		case n.Mode == ModeAudit && c.Mode == ModeEnforce && !c.TrustAnnotations:
			return Policy{}, fmt.Errorf("the container asked for mode audit, which the config (mode enforce, trustAnnotations false) no longer allows")
		}
		p.Mode = n.Mode
	}
	if len(n.Proxies) > 0 {
		for _, ap := range n.Proxies {
			if !c.TrustAnnotations && !slices.Contains(c.proxies, ap) {
				return Policy{}, fmt.Errorf("the container asked for proxy %s, which is no longer one of the configured proxies", ap)
			}
		}
		p.Proxies = slices.Clone(n.Proxies)
	}
	slices.SortFunc(p.Proxies, netip.AddrPort.Compare)
	if len(p.Proxies) == 0 {
		return Policy{}, &Error{Key: "proxies", Msg: "is empty: a fence needs at least one proxy"}
	}
	return p, nil
}
