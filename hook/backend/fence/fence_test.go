// SPDX-License-Identifier: Apache-2.0

package fence

import (
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/hook/rules"
)

func TestSeenWhole(t *testing.T) {
	want := map[rules.Family]string{rules.IPv4: Digest([]string{"a", "b"}), rules.IPv6: Digest([]string{"c"})}
	same := map[rules.Family]string{rules.IPv4: Digest([]string{"a", "b"}), rules.IPv6: Digest([]string{"c"})}
	for _, tc := range []struct {
		name  string
		seen  Seen
		want  map[rules.Family]string
		whole bool
		why   string
	}{
		{"as installed", Seen{Present: true, Rules: same}, want, true, ""},
		{"gone", Seen{}, want, false, "gone"},
		{"something in front", Seen{Present: true, Problem: "ipv4: OUTPUT's first rule is \"-A OUTPUT -j ACCEPT\"", Rules: same}, want, false, "first rule"},
		{"a rule changed", Seen{Present: true, Rules: map[rules.Family]string{rules.IPv4: Digest([]string{"a", "x"}), rules.IPv6: same[rules.IPv6]}}, want, false, "ipv4 rules differ"},
		{"a rule gone", Seen{Present: true, Rules: map[rules.Family]string{rules.IPv4: same[rules.IPv4], rules.IPv6: Digest(nil)}}, want, false, "ipv6 rules differ"},
		{"order matters", Seen{Present: true, Rules: map[rules.Family]string{rules.IPv4: Digest([]string{"b", "a"}), rules.IPv6: same[rules.IPv6]}}, want, false, "ipv4 rules differ"},
		{"an old record without digests", Seen{Present: true, Rules: same}, nil, false, "no digest"},
		{"an older form of digest", Seen{Present: true, Rules: same}, map[rules.Family]string{rules.IPv4: "9f86d08", rules.IPv6: "60303ae"}, false, "older bypass-hook"},
	} {
		whole, why := tc.seen.Whole(tc.want)
		if whole != tc.whole || !strings.Contains(why, tc.why) {
			t.Errorf("%s: Whole = %v, %q; want %v, %q", tc.name, whole, why, tc.whole, tc.why)
		}
	}
	// A line boundary is part of the digest: "ab" is not "a", "b".
	if Digest([]string{"ab"}) == Digest([]string{"a", "b"}) {
		t.Error("digest ignores where lines end")
	}
}
