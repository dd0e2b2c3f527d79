// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

func flow(proto, dst string, dport uint16) Flow {
	return Flow{Proto: proto, Src: netip.MustParseAddr("198.51.100.10"), Dst: netip.MustParseAddr(dst), Sport: 40000, Dport: dport}
}

func TestHint(t *testing.T) {
	p := &config.Policy{Mode: config.ModeEnforce, Proxies: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3128")}}
	p6 := &config.Policy{Mode: config.ModeEnforce, Proxies: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3128"), netip.MustParseAddrPort("[2001:db8::1]:3128")}}
	for _, tc := range []struct {
		name string
		f    Flow
		p    *config.Policy
		want []string // all must be in the hint
	}{
		{"https names the proxy and Node's switch", flow("tcp", "203.0.113.7", 443), p, []string{"HTTPS_PROXY", "http://198.51.100.1:3128", "NODE_USE_ENV_PROXY=1"}},
		{"http on 8080 too", flow("tcp", "203.0.113.7", 8080), p, []string{"HTTP_PROXY", "NODE_USE_ENV_PROXY=1"}},
		{"the proxy's address on another port", flow("tcp", "198.51.100.1", 8080), p, []string{"is the proxy's address, but port 8080 is not the proxy's (3128)"}},
		{"dns over udp", flow("udp", "203.0.113.53", 53), p, []string{"DNS", "dns:"}},
		{"dns over tcp", flow("tcp", "203.0.113.53", 53), p, []string{"DNS", "dns:"}},
		{"quic", flow("udp", "203.0.113.7", 443), p, []string{"QUIC", "HTTP/3"}},
		{"ntp", flow("udp", "203.0.113.123", 123), p, []string{"NTP"}},
		{"ssh", flow("tcp", "203.0.113.22", 22), p, []string{"ProxyCommand", "198.51.100.1:3128"}},
		{"other tcp", flow("tcp", "203.0.113.7", 9090), p, []string{"HTTP CONNECT", "allow:"}},
		{"other udp", flow("udp", "203.0.113.7", 9999), p, []string{"UDP", "allow:"}},
		{"ping", flow("icmp", "203.0.113.7", 0), p, []string{"ping"}},
		{"ping6", flow("icmpv6", "2001:db8::7", 0), p, []string{"ping"}},
		{"other protocol", flow("gre", "203.0.113.7", 0), p, []string{"gre", "otherProtocols: accept"}},
		{"unknown fence", flow("tcp", "203.0.113.7", 443), nil, []string{"HTTPS_PROXY", "the proxy"}},
		{"ipv6 is told the ipv6 proxy", flow("tcp", "2001:db8::7", 443), p6, []string{"http://[2001:db8::1]:3128"}},
		{"ipv4 is told the ipv4 proxy", flow("tcp", "203.0.113.7", 443), p6, []string{"http://198.51.100.1:3128"}},
		{"ipv6 without an ipv6 proxy", flow("tcp", "2001:db8::7", 443), p, []string{"http://198.51.100.1:3128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Hint(tc.f, tc.p)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("hint %q lacks %q", got, w)
				}
			}
		})
	}
}

func testFence(id, mode string, owners ...string) *fence {
	rec := &records.Record{
		Netns:    netns.ID{Dev: 4, Ino: 4026532999},
		LogID:    id,
		Policy:   config.Policy{Mode: mode, Proxies: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3128")}, Log: config.LogPolicy{Target: config.LogKernel, Prefix: "bypass"}},
		Features: rules.AllFeatures,
	}
	for _, o := range owners {
		rec.Owners = append(rec.Owners, records.Owner{ID: o})
	}
	return &fence{key: rec.Netns.Key(), rec: rec, prefix: rules.LogPrefix("bypass", id), credit: &credit{}}
}

func TestNewEvent(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	f := flow("tcp", "203.0.113.7", 443)
	for _, tc := range []struct {
		name       string
		fe         *fence
		hasUID     bool
		wantAction string
		wantOwners []string
	}{
		{"enforce", testFence("aaaa", config.ModeEnforce, "aaaa"), true, ActionRefused, nil},
		{"audit", testFence("aaaa", config.ModeAudit, "aaaa"), true, ActionAudited, nil},
		{"a pod lists its owners", testFence("first", config.ModeEnforce, "first", "app"), true, ActionRefused, []string{"first", "app"}},
		{"the first owner gone", testFence("first", config.ModeEnforce, "app"), true, ActionRefused, []string{"app"}},
		{"unknown fence", nil, false, ActionUnknown, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEvent(at, f, 1000, tc.hasUID, tc.fe, sourceKernel)
			if ev.Action != tc.wantAction || !slices.Equal(ev.Owners, tc.wantOwners) {
				t.Errorf("action %q owners %v, want %q %v", ev.Action, ev.Owners, tc.wantAction, tc.wantOwners)
			}
			if ev.Time.Location() != time.UTC || !ev.Time.Equal(at) {
				t.Errorf("time %v, want %v in UTC", ev.Time, at)
			}
			if tc.hasUID != (ev.UID != nil) || (ev.UID != nil && *ev.UID != 1000) {
				t.Errorf("uid %v", ev.UID)
			}
			if tc.fe != nil && (ev.Container != tc.fe.rec.LogID || ev.Netns != "net:[4026532999]") {
				t.Errorf("container %q netns %q", ev.Container, ev.Netns)
			}
		})
	}
}

// The event's JSON is the monitor's interface: its field names are fixed.
func TestEventJSON(t *testing.T) {
	uid := uint32(0)
	ev := Event{Time: time.Unix(0, 0).UTC(), Container: "c", Proto: "tcp", Src: "198.51.100.10", Sport: 1, Dst: "198.51.100.1",
		Dport: 2, UID: &uid, Action: ActionRefused, Hint: "h", Source: sourceNflog}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"action", "container", "dport", "dst", "hint", "proto", "source", "sport", "src", "time", "uid"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	if m["uid"] != 0.0 {
		t.Errorf("uid 0 must be printed as 0, got %v", m["uid"])
	}
	ev.UID = nil
	b, _ = json.Marshal(ev)
	if !strings.Contains(string(b), `"uid":null`) {
		t.Errorf("an unknown uid must be null: %s", b)
	}
}

// Events and the attempts series name a container by its pod where the
// record has it, and by its id elsewhere.
func TestEventIdentity(t *testing.T) {
	f := flow("tcp", "203.0.113.7", 443)
	pod := testFence("c1", config.ModeEnforce, "c1", "c2")
	pod.rec.Owners[0].Identity = oci.Identity{Namespace: "team-a", Pod: "agent", Container: "app"}
	pod.rec.Owners[1].Identity = oci.Identity{Namespace: "team-a", Pod: "agent", Container: "sidecar"}
	left := testFence("c1", config.ModeEnforce, "c2") // the first owner left
	left.rec.Owners[0].Identity = oci.Identity{Namespace: "team-a", Pod: "agent", Container: "sidecar"}
	plain := testFence("c3", config.ModeEnforce, "c3")
	for _, tc := range []struct {
		name string
		fe   *fence
		want [3]string
		l    seriesLabels
	}{
		{"pod", pod, [3]string{"team-a", "agent", "app"}, seriesLabels{"team-a", "agent", "app"}},
		{"first owner gone", left, [3]string{"team-a", "agent", ""}, seriesLabels{"team-a", "agent", ""}},
		{"outside Kubernetes", plain, [3]string{}, seriesLabels{container: "c3"}},
	} {
		ev := newEvent(time.Now(), f, 0, false, tc.fe, sourceNflog)
		if got := [3]string{ev.PodNamespace, ev.Pod, ev.ContainerName}; got != tc.want {
			t.Errorf("%s: event names %v, want %v", tc.name, got, tc.want)
		}
		if got := labelsOf(tc.fe.rec); got != tc.l {
			t.Errorf("%s: labels %+v, want %+v", tc.name, got, tc.l)
		}
	}
}
