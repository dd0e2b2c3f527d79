// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// apply brings running fences to a changed config without a container's
// create: an allow entry added reaches both namespaces at once, a
// container's annotated proxy subset is kept, and a fence whose annotations
// the new config no longer allows is left as it was and reported.
func TestApply(t *testing.T) {
	lab := testnet.NewLab(t)
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			plainNs, narrowNs := lab.AddClient(t), lab.AddClient(t)
			e := newEnv(t, lab, backend, "")
			plain, narrow := startIn(t, plainNs.Netns), startIn(t, narrowNs.Netns)
			if _, err := e.create(plain.state()); err != nil {
				t.Fatal(err)
			}
			st := narrow.state()
			st.Annotations = map[string]string{config.AnnProxies: lab.ProxyV4}
			if _, err := e.create(st); err != nil {
				t.Fatal(err)
			}
			// The config as it is: nothing to do.
			byNetns := applyAll(t, e)
			for _, a := range byNetns {
				if a.Action != hook.AppliedCurrent || a.Error != "" {
					t.Errorf("apply under the config the fences were made with: %+v", a)
				}
			}

			allowed := newEnv(t, lab, backend, fmt.Sprintf("allow: [{cidr: %s/32, ports: [%d], protocol: tcp}]\n", lab.ServerV4, testnet.TCPPort))
			allowed.cfg.StateDir, allowed.log = e.cfg.StateDir, e.log
			byNetns = applyAll(t, allowed)
			for _, c := range []*testnet.Client{plainNs, narrowNs} {
				a := byNetns[netnsOf(t, c)]
				if a.Action != hook.AppliedReplaced || a.Error != "" || a.NewDigest == a.OldDigest {
					t.Errorf("%s: apply after an allow entry was added: %+v", c.Netns.Name, a)
				}
				el, err := testnet.DialTCP(c.Netns, lab.TCPV4, probeTimeout)
				expectOK(t, c.Netns.Name+": direct TCP to the new allow entry", el, err)
				el, err = testnet.DialTCP(c.Netns, lab.TCPV6, probeTimeout)
				expectRefused(t, c.Netns.Name+": direct TCP elsewhere", el, err)
			}
			// The annotated container keeps only the proxy it named.
			_, el, err := testnet.HTTPConnect(narrowNs.Netns, lab.ProxyV6, lab.URLV6, probeTimeout)
			expectRefused(t, "the proxy the annotations left out", el, err)
			_, el, err = testnet.HTTPConnect(narrowNs.Netns, lab.ProxyV4, lab.URLV6, probeTimeout)
			expectOK(t, "the proxy the annotations named", el, err)
			for _, r := range allowed.records() {
				d, _ := allowed.cfg.Narrowed(*r.Narrowing)
				if r.Digest != d.Digest() || len(r.Policy.Allow) != 1 {
					t.Errorf("record after apply: %+v", r)
				}
			}

			// The IPv4 proxy goes: the annotated fence cannot follow.
			v6only := newEnv(t, nil, backend, fmt.Sprintf("proxies: [%q]\n", lab.ProxyV6))
			v6only.cfg.StateDir, v6only.log = e.cfg.StateDir, e.log
			byNetns = applyAll(t, v6only)
			if a := byNetns[netnsOf(t, narrowNs)]; a.Action != hook.AppliedLeft || !strings.Contains(a.Error, lab.ProxyV4) {
				t.Errorf("a fence whose annotated proxy left the config: %+v", a)
			}
			if a := byNetns[netnsOf(t, plainNs)]; a.Action != hook.AppliedReplaced {
				t.Errorf("the plain fence under the IPv6-only config: %+v", a)
			}
			_, el, err = testnet.HTTPConnect(plainNs.Netns, lab.ProxyV4, lab.URLV6, probeTimeout)
			expectRefused(t, "the IPv4 proxy, no longer configured", el, err)
			_, el, err = testnet.HTTPConnect(narrowNs.Netns, lab.ProxyV4, lab.URLV6, probeTimeout)
			expectOK(t, "the annotated fence, left as it was", el, err)

			for _, id := range []string{plain.id, narrow.id} {
				if _, err := e.poststop(id); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func applyAll(t *testing.T, e *env) map[string]hook.Applied {
	t.Helper()
	applied, err := e.hook().Apply()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hook.Applied{}
	for _, a := range applied {
		out[a.Netns] = a
	}
	return out
}

func netnsOf(t *testing.T, c *testnet.Client) string {
	t.Helper()
	return nsOf(t, c.Netns).ID.String()
}
