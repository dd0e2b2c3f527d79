// SPDX-License-Identifier: Apache-2.0

package status

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// An answer as the monitor gives it: a list of its events, oldest first.
const monitorAnswer = `[
{"time":"2026-12-07T10:00:01Z","container":"aaa","proto":"tcp","src":"198.51.100.50","sport":40000,"dst":"198.51.100.1","dport":443,"uid":65534,"action":"refused","hint":"h","netns":"net:[4026532001]","source":"nflog","pid":4242,"pidInContainer":7,"comm":"curl","exe":"curl"},
{"time":"2026-12-07T10:00:02Z","container":"bbb","proto":"udp","src":"198.51.100.60","sport":40001,"dst":"198.51.100.2","dport":53,"uid":null,"action":"audited","hint":"h","netns":"net:[4026532002]","source":"kernel"}
]`

func TestRecentFromTheMonitor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/attempts" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(monitorAnswer))
	}))
	defer srv.Close()
	attempts, err := Recent(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fences := []FenceStatus{{Container: "aaa", Netns: "net:[4026532001]"}, {Container: "bbb", Netns: "net:[4026532002]"}, {Container: "ccc", Netns: "net:[4026532003]"}}
	AddRecent(fences, attempts)
	a := fences[0].Recent
	if len(a) != 1 || a[0].Pid == nil || *a[0].Pid != 4242 || a[0].PidInContainer != 7 || a[0].Exe != "curl" || a[0].Comm != "curl" ||
		a[0].UID == nil || *a[0].UID != 65534 || a[0].Dst != "198.51.100.1" || a[0].Dport != 443 || a[0].Proto != "tcp" {
		t.Fatalf("fence aaa's recent attempts: %+v", a)
	}
	if len(fences[1].Recent) != 1 || fences[1].Recent[0].Pid != nil {
		t.Errorf("fence bbb's recent attempts: %+v", fences[1].Recent)
	}
	if fences[2].Recent == nil || len(fences[2].Recent) != 0 {
		t.Errorf("fence ccc, of no attempt: %#v, want an empty list", fences[2].Recent)
	}

	var b strings.Builder
	if err := WriteDetails(&b, fences); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"recent attempts (the last 1 the monitor saw):",
		"recent attempts: none since the monitor started",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
	// A row's columns, whatever their widths.
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "2026-") {
			rows[f[0]] = strings.Join(f, " ")
		}
	}
	for at, want := range map[string]string{
		"2026-12-07T10:00:01Z": "2026-12-07T10:00:01Z refused tcp 198.51.100.1 443 65534 4242 7 curl curl",
		"2026-12-07T10:00:02Z": "2026-12-07T10:00:02Z audited udp 198.51.100.2 53 - - - - -",
	} {
		if rows[at] != want {
			t.Errorf("the attempt at %s shows as %q, want %q:\n%s", at, rows[at], want, out)
		}
	}
}

func TestRecentWithoutMonitor(t *testing.T) {
	// Nothing listens: a port just let go.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Recent(context.Background(), addr); err == nil {
		t.Error("Recent from an address nothing serves: no error")
	}

	// Another server: not a monitor's answer.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if _, err := Recent(context.Background(), strings.TrimPrefix(srv.URL, "http://")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Recent from a server with no /attempts: %v, want the 404", err)
	}

	// A server that does not answer: the caller's deadline ends the wait.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Recent(ctx, strings.TrimPrefix(hang.URL, "http://")); err == nil {
		t.Error("Recent from a server that never answers: no error")
	}

	// Not asked: nothing is written.
	var b strings.Builder
	if err := writeRecent(&b, FenceStatus{}); err != nil || b.Len() != 0 {
		t.Errorf("a fence the monitor was not asked about: %q, %v", b.String(), err)
	}
}
