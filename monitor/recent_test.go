// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func recentEvent(netns string, i int) Event {
	return Event{Time: time.Unix(int64(1000+i), 0).UTC(), Netns: netns, Dport: uint16(i), Proto: "tcp"}
}

func dports(evs []Event) []int {
	var out []int
	for _, ev := range evs {
		out = append(out, int(ev.Dport))
	}
	return out
}

func TestRecentAttemptsRing(t *testing.T) {
	r := newRecentAttempts()
	for i := 1; i <= 25; i++ {
		r.add(recentEvent("net:[1]", i))
	}
	for i := 101; i <= 103; i++ {
		r.add(recentEvent("net:[2]", i))
	}
	r.add(recentEvent("", 999)) // no fence: not kept

	tests := []struct {
		netns string
		want  []int
	}{
		{"net:[1]", []int{16, 17, 18, 19, 20, 21, 22, 23, 24, 25}},
		{"net:[2]", []int{101, 102, 103}},
		{"net:[3]", nil},
		{"", []int{16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 101, 102, 103}},
	}
	for _, tc := range tests {
		if got := dports(r.list(tc.netns)); !equalInts(got, tc.want) {
			t.Errorf("list(%q) = %v, want %v", tc.netns, got, tc.want)
		}
	}
	if n := cap(r.byNetns["net:[1]"].evs); n != RecentPerFence {
		t.Errorf("a fence's ring grew to %d, want %d", n, RecentPerFence)
	}

	r.keep(map[string]bool{"net:[2]": true})
	if got := dports(r.list("")); !equalInts(got, []int{101, 102, 103}) {
		t.Errorf("after the fence of net:[1] went: %v, want only net:[2]'s", got)
	}
	if len(r.byNetns) != 1 {
		t.Errorf("%d rings kept, want 1", len(r.byNetns))
	}
	r.drop("net:[2]")
	if got := r.list(""); len(got) != 0 || len(r.byNetns) != 0 {
		t.Errorf("after the fence of net:[2] went: %v, %d rings", got, len(r.byNetns))
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAttemptsHandler(t *testing.T) {
	m := &Monitor{recent: newRecentAttempts()}
	pid := uint32(4242)
	ev := recentEvent("net:[7]", 443)
	ev.Pid, ev.PidInContainer, ev.Comm, ev.Exe = &pid, 7, "curl", "curl"
	m.recent.add(ev)
	m.recent.add(recentEvent("net:[8]", 53))
	srv := httptest.NewServer(m.AttemptsHandler())
	defer srv.Close()

	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"", []int{53, 443}}, // oldest first, whichever fence
		{"?netns=net:[7]", []int{443}},
		{"?netns=net:[9]", []int{}},
	} {
		resp, err := http.Get(srv.URL + AttemptsPath + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got []Event
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || got == nil {
			t.Fatalf("GET %s: %d, %v, %v; want 200 and a JSON list", tc.query, resp.StatusCode, err, got)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", tc.query, ct)
		}
		if !equalInts(dports(got), tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("GET %s: %v, want %v", tc.query, dports(got), tc.want)
		}
		if tc.query == "?netns=net:[7]" && (got[0].Pid == nil || *got[0].Pid != pid || got[0].Exe != "curl" || got[0].PidInContainer != 7) {
			t.Errorf("GET %s: %+v lost the process", tc.query, got[0])
		}
	}
	resp, err := http.Post(srv.URL+AttemptsPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}
