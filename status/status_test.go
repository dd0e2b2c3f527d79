// SPDX-License-Identifier: Apache-2.0

package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// fakeBackend answers Counters with fixed numbers; status needs no more.
type fakeBackend struct {
	counters map[rules.Family][]uint64
	err      error
	seen     backend.Seen
}

// Two container ids whose first 12 characters differ, as in the monitor's tests.
const (
	idA = "aaaaaaaaaaaa0123456789"
	idB = "bbbbbbbbbbbb0123456789"
)

func (f *fakeBackend) Name() string                               { return "fake" }
func (f *fakeBackend) Install(netns.Handle, rules.RuleSet) error  { return errors.New("not here") }
func (f *fakeBackend) Inspect(netns.Handle) (backend.Seen, error) { return f.seen, nil }
func (f *fakeBackend) Remove(netns.Handle) error                  { return errors.New("not here") }
func (f *fakeBackend) Counters(netns.Handle) (map[rules.Family][]uint64, error) {
	return f.counters, f.err
}

// statusRecord is a fence of the test process's own namespace, which any
// user can stat, with the rule names Rules makes.
func statusRecord(t *testing.T, id, mode string, owners ...string) *records.Record {
	t.Helper()
	own, err := netns.Stat("/proc/self/ns/net")
	if err != nil {
		t.Skipf("skipping: cannot stat this process's network namespace: %v", err)
	}
	rec := testrecord.New(0, id, mode, config.LogNflog, owners...)
	rec.Netns, rec.Paths = own, []string{"/proc/self/ns/net"}
	rec.RuleNames = map[rules.Family][]string{}
	for _, fam := range rules.Families {
		for _, r := range rules.Rules(rec.Policy, id, fam, rec.Features) {
			rec.RuleNames[fam] = append(rec.RuleNames[fam], r.Name)
		}
	}
	return rec
}

// countersFor gives each rule named in values that count, 0 elsewhere.
func countersFor(rec *records.Record, values map[string]uint64) map[rules.Family][]uint64 {
	out := map[rules.Family][]uint64{}
	for fam, names := range rec.RuleNames {
		for _, n := range names {
			out[fam] = append(out[fam], values[n])
		}
	}
	return out
}

func TestStatus(t *testing.T) {
	rec := statusRecord(t, idA, config.ModeEnforce, idA, "app-container")
	store := &records.Store{Dir: t.TempDir()}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	// Both families' rules of a name add up.
	fb := &fakeBackend{counters: countersFor(rec, map[string]uint64{"refuse-tcp": 7, "log-tcp": 5, "refuse-udp": 2, "log-udp": 2})}
	newBackend := func(name string) (backend.Backend, error) {
		if name != config.BackendIptables {
			t.Errorf("backend %q asked for, the record has iptables", name)
		}
		return fb, nil
	}

	for _, id := range []string{"", idA, "app-container", "app-", "aaaa"} {
		got, err := Read(store, id, newBackend)
		if err != nil {
			t.Fatalf("Read(%q): %v", id, err)
		}
		if len(got) != 1 {
			t.Fatalf("Read(%q): %d fences", id, len(got))
		}
		s := got[0]
		want := rules.Tally{RefusedTCP: 14, RefusedUDP: 4, Logged: 14}
		if s.Error != "" || s.Totals == nil || *s.Totals != want {
			t.Fatalf("Read(%q): totals %+v error %q, want %+v", id, s.Totals, s.Error, want)
		}
		if s.Container != idA || len(s.Owners) != 2 || s.Mode != config.ModeEnforce || s.NetnsPath != "/proc/self/ns/net" {
			t.Errorf("Read(%q): %+v", id, s)
		}
		if len(s.Rules) != len(rec.RuleNames[rules.IPv4])+len(rec.RuleNames[rules.IPv6]) || s.Rules[0].Rule == "" || s.Rules[0].Packets == nil {
			t.Errorf("Read(%q): rules %+v", id, s.Rules)
		}
	}

	var details, summary bytes.Buffer
	fences, _ := Read(store, "", newBackend)
	if err := WriteDetails(&details, fences); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"container  " + idA, "refused    tcp 14, udp 4, other 0", "app-container (pid -1", "refuse-tcp: proto=tcp -> reject-tcp-reset", "ipv6",
		"-> RETURN (passes on to the rest of OUTPUT)"} {
		if !strings.Contains(details.String(), want) {
			t.Errorf("details lack %q:\n%s", want, details.String())
		}
	}
	if strings.Contains(details.String(), "-> accept") {
		t.Errorf("the iptables backend RETURNs; details say accept:\n%s", details.String())
	}
	if err := WriteSummary(&summary, fences); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(summary.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "aaaaaaaaaaaa ") || !strings.Contains(lines[1], " 14 ") {
		t.Errorf("summary:\n%s", summary.String())
	}
	if _, err := json.Marshal(fences); err != nil {
		t.Error(err)
	}
}

func TestStatusErrors(t *testing.T) {
	store := &records.Store{Dir: t.TempDir()}
	recA := statusRecord(t, idA, config.ModeEnforce, idA)
	recB := statusRecord(t, "aaaaaaaaaaab99", config.ModeEnforce, "aaaaaaaaaaab99")
	recB.Netns.Ino++ // another namespace, which nothing reaches
	for _, r := range []*records.Record{recA, recB} {
		if err := store.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	ok := func(string) (backend.Backend, error) { return &fakeBackend{counters: countersFor(recA, nil)}, nil }

	if _, err := Read(store, "nope", ok); err == nil || !strings.Contains(err.Error(), `no fenced container "nope"`) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := Read(store, "aaaa", ok); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("ambiguous id: %v", err)
	}
	got, _ := Read(store, "aaaaaaaaaaab", ok)
	if got[0].Error == "" || !strings.Contains(got[0].Error, "gone") || got[0].Totals != nil {
		t.Errorf("unreachable namespace: %+v", got[0])
	}
	// The namespace has rules the record does not know of.
	short := func(string) (backend.Backend, error) {
		return &fakeBackend{counters: map[rules.Family][]uint64{rules.IPv4: {1, 2}, rules.IPv6: {}}}, nil
	}
	got, _ = Read(store, idA, short)
	if !strings.Contains(got[0].Error, "changed by other hands") || got[0].Totals != nil {
		t.Errorf("rules changed: %+v", got[0])
	}
	failing := func(string) (backend.Backend, error) { return &fakeBackend{err: errors.New("xtables lock")}, nil }
	got, _ = Read(store, idA, failing)
	if !strings.Contains(got[0].Error, "xtables lock") {
		t.Errorf("counters failing: %+v", got[0])
	}
	// A record of another build of the hook: rules by name only.
	recA.RuleNames[rules.IPv4] = append([]string{"something-new"}, recA.RuleNames[rules.IPv4]...)
	if err := store.Save(recA); err != nil {
		t.Fatal(err)
	}
	got, _ = Read(store, idA, func(string) (backend.Backend, error) { return &fakeBackend{counters: countersFor(recA, nil)}, nil })
	if got[0].Error != "" || got[0].Rules[0].Rule != "" || got[0].Rules[0].Name != "something-new" {
		t.Errorf("rules of another build: %+v", got[0].Rules[:2])
	}
}

// An audit-mode fence refuses nothing: status shows what it let through.
func TestStatusAudit(t *testing.T) {
	rec := statusRecord(t, idB, config.ModeAudit, idB)
	store := &records.Store{Dir: t.TempDir()}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{counters: countersFor(rec, map[string]uint64{"audit-tcp": 3, "log-tcp": 3, "audit-udp": 1, "log-udp": 1})}
	fences, err := Read(store, idB, func(string) (backend.Backend, error) { return fb, nil })
	if err != nil {
		t.Fatal(err)
	}
	if tl := fences[0].Totals; tl == nil || tl.AuditedTCP != 6 || tl.AuditedUDP != 2 || tl.RefusedTCP != 0 {
		t.Fatalf("totals %+v; want 6 TCP and 2 UDP audited (both families), none refused", tl)
	}
	var details, summary bytes.Buffer
	if err := WriteDetails(&details, fences); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(details.String(), "audited    tcp 6, udp 2, other 0") || strings.Contains(details.String(), "refused ") {
		t.Errorf("details of an audit fence:\n%s", details.String())
	}
	if err := WriteSummary(&summary, fences); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(summary.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "  6 ") {
		t.Errorf("summary:\n%s", summary.String())
	}
}

func TestFilter(t *testing.T) {
	owner := func(id, ns, pod string) OwnerStatus {
		return OwnerStatus{Owner: records.Owner{ID: id, Identity: oci.Identity{Namespace: ns, Pod: pod, Container: "app"}}}
	}
	fences := []FenceStatus{
		{Container: "a", Owners: []OwnerStatus{owner("a", "team-a", "web")}},
		{Container: "b", Owners: []OwnerStatus{owner("b", "team-b", "web"), owner("b2", "team-b", "web")}},
		{Container: "c", Owners: []OwnerStatus{{Owner: records.Owner{ID: "c"}}}},
	}
	for _, tc := range []struct {
		ns, pod string
		want    []string
	}{
		{"", "", []string{"a", "b", "c"}},
		{"team-a", "", []string{"a"}},
		{"", "web", []string{"a", "b"}},
		{"team-b", "web", []string{"b"}},
		{"team-a", "db", nil},
	} {
		var got []string
		for _, f := range Filter(fences, tc.ns, tc.pod) {
			got = append(got, f.Container)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Filter(%q, %q) = %v, want %v", tc.ns, tc.pod, got, tc.want)
		}
	}
	var b strings.Builder
	if err := WriteSummary(&b, fences[:1]); err != nil || !strings.Contains(b.String(), "team-a/web") {
		t.Errorf("summary does not name the pod: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := WriteUnfenced(&b, []records.Unfenced{{ID: "d", Pid: 7, Identity: oci.Identity{Namespace: "n", Pod: "p", Container: "c"}, Reason: "it is on the host network"}}); err != nil ||
		!strings.Contains(b.String(), "NOT FENCED") || !strings.Contains(b.String(), "n/p/c") || !strings.Contains(b.String(), "host network") {
		t.Errorf("unfenced list: %v\n%s", err, b.String())
	}
}

// A podman container or pod name finds the fence of its containers.
func TestReadByPodmanName(t *testing.T) {
	rec := statusRecord(t, idA, config.ModeEnforce, idA)
	store := &records.Store{Dir: t.TempDir()}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	// A podman that knows container "web" and pod "mypod" (whose infra
	// container has no fence of its own: it shares the one of idA).
	bin := t.TempDir()
	script := "#!/bin/sh\ncase \"$1 $5\" in\n" +
		"'container web') echo " + idA + ";;\n" +
		"'pod mypod') echo infra0123 " + idA + ";;\n" +
		"'container ghost') echo deadbeef;;\n" +
		"*) echo no such >&2; exit 125;;\nesac\n"
	if err := os.WriteFile(filepath.Join(bin, "podman"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	fb := &fakeBackend{counters: countersFor(rec, nil)}
	newBackend := func(string) (backend.Backend, error) { return fb, nil }
	for _, name := range []string{"web", "mypod"} {
		got, err := Read(store, name, newBackend)
		if err != nil || len(got) != 1 || got[0].Container != idA {
			t.Errorf("Read(%q): %+v, %v", name, got, err)
		}
	}
	if _, err := Read(store, "ghost", newBackend); err == nil || !strings.Contains(err.Error(), "no fence is recorded") {
		t.Errorf("a podman container without a fence: %v", err)
	}
	if _, err := Read(store, "nope", newBackend); err == nil || !strings.Contains(err.Error(), `no fenced container "nope"`) {
		t.Errorf("an unknown name: %v", err)
	}
}

func TestSummaryEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSummary(&b, nil); err != nil || b.String() != "no fenced containers\n" {
		t.Errorf("summary of nothing: %q, %v", b.String(), err)
	}
}

// status says whether each fence is whole, whatever its counters say, and
// what is wrong when it is not.
func TestReadWhole(t *testing.T) {
	rec := statusRecord(t, idA, config.ModeEnforce, idA)
	rec.RulesDigest = map[rules.Family]string{rules.IPv4: "2:d4", rules.IPv6: "2:d6"}
	store := &records.Store{Dir: t.TempDir()}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		seen  backend.Seen
		whole bool
		why   string
	}{
		{"as installed", backend.Seen{Present: true, Rules: rec.RulesDigest}, true, ""},
		{"a rule in front", backend.Seen{Present: true, Problem: "ipv4: OUTPUT's first rule is \"-A OUTPUT -j ACCEPT\"", Rules: rec.RulesDigest}, false, "first rule"},
		{"rules changed", backend.Seen{Present: true, Rules: map[rules.Family]string{rules.IPv4: "2:x", rules.IPv6: "2:d6"}}, false, "ipv4 rules differ"},
	} {
		fb := &fakeBackend{counters: countersFor(rec, nil), seen: tc.seen}
		got, err := Read(store, "", func(string) (backend.Backend, error) { return fb, nil })
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: %v, %d fences", tc.name, err, len(got))
		}
		s := got[0]
		if s.Whole == nil || *s.Whole != tc.whole || !strings.Contains(s.NotWhole, tc.why) {
			t.Errorf("%s: whole %v, %q; want %v, %q", tc.name, s.Whole, s.NotWhole, tc.whole, tc.why)
		}
		var b bytes.Buffer
		if err := WriteDetails(&b, got); err != nil {
			t.Fatal(err)
		}
		want := "whole      yes"
		if !tc.whole {
			want = "whole      NO: "
		}
		if !strings.Contains(b.String(), want) || !strings.Contains(b.String(), tc.why) {
			t.Errorf("%s: details do not say %q and %q:\n%s", tc.name, want, tc.why, b.String())
		}
	}
}

// A record a killed hook left incomplete says so in every form of status.
func TestStatusIncomplete(t *testing.T) {
	rec := statusRecord(t, idA, config.ModeEnforce, idA)
	rec.Incomplete = records.IncompleteInstall
	store := &records.Store{Dir: t.TempDir()}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{counters: countersFor(rec, nil)}
	fences, err := Read(store, "", func(string) (backend.Backend, error) { return fb, nil })
	if err != nil || len(fences) != 1 || fences[0].Incomplete != records.IncompleteInstall {
		t.Fatalf("Read: %+v, %v", fences, err)
	}
	var details, summary bytes.Buffer
	if err := WriteDetails(&details, fences); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(&summary, fences); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(details.String(), "incomplete  YES: a hook was killed") {
		t.Errorf("details do not say the record is incomplete:\n%s", details.String())
	}
	if !strings.Contains(summary.String(), "INCOMPLETE") {
		t.Errorf("the summary does not say the record is incomplete:\n%s", summary.String())
	}
}

// The kernel gives a freed namespace's inode number to the next one made:
// a record whose namespace is gone may name, by number, a live namespace
// fenced by someone else. status tells them apart by the record's file
// handle and says the record's namespace is gone, not the other's counters.
func TestStatusOfARecycledNumber(t *testing.T) {
	goneHandle := testrecord.GoneHandle(t)
	// The record names this process's namespace by number (statusRecord),
	// with the handle of the namespace it was made for.
	rec := statusRecord(t, idA, config.ModeEnforce, idA)
	rec.NsHandle = goneHandle
	store := &records.Store{Dir: t.TempDir()}
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	fb := func(string) (backend.Backend, error) { return &fakeBackend{counters: countersFor(rec, nil)}, nil }
	got, err := Read(store, idA, fb)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Error == "" || !strings.Contains(got[0].Error, "gone") || got[0].Totals != nil {
		t.Errorf("a record whose number is another namespace's now: error %q, totals %v; want it shown gone", got[0].Error, got[0].Totals)
	}
}
