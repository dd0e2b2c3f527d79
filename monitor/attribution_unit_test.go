// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
	"github.com/bypass-hook/bypass-hook/monitor/attrib"
)

// fakeAttributor knows one attempt.
type fakeAttributor struct {
	known   attrib.Flow
	proc    attrib.Process
	lookups []attrib.Flow
}

func (f *fakeAttributor) Fence(uint64) error   { return nil }
func (f *fakeAttributor) Unfence(uint64) error { return nil }
func (f *fakeAttributor) Close() error         { return nil }
func (f *fakeAttributor) Lookup(fl attrib.Flow) (attrib.Process, bool) {
	f.lookups = append(f.lookups, fl)
	return f.proc, fl == f.known
}

func attribMonitor(t *testing.T, load func() (Attributor, error)) (*Monitor, *test.Hook) {
	t.Helper()
	logger, hook := test.NewNullLogger()
	m := newMonitor(Options{Config: testConfig(t, config.LogNflog), Out: &syncBuffer{}, Log: logger,
		Attribution: true, LoadAttribution: load}, &records.Store{Dir: t.TempDir()})
	m.startAttribution()
	return m, hook
}

// TestAttributionJoin: an event is named after the attempt the kernel
// filed under the fence's namespace cookie and the packet's protocol,
// addresses and ports, in audit mode too; one of a namespace without a
// cookie is not looked up.
func TestAttributionJoin(t *testing.T) {
	fl := Flow{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.10"), Sport: 41000, Dst: netip.MustParseAddr("203.0.113.7"), Dport: 443}
	fa := &fakeAttributor{
		known: attrib.Flow{Netns: 77, Proto: 6, Src: fl.Src, Sport: 41000, Dst: fl.Dst, Dport: 443},
		proc:  attrib.Process{Pid: 4242, PidInContainer: 7, Comm: "curl", Exe: "curl", Ppid: 4200, ParentComm: "sh"},
	}
	m, _ := attribMonitor(t, func() (Attributor, error) { return fa, nil })
	enforcing := &fence{rec: testrecord.New(1, idA, config.ModeEnforce, config.LogNflog, idA), netnsCookie: 77}
	ev := m.attributed(newEvent(time.Now(), fl, 1000, true, enforcing, sourceNflog), enforcing, fl)
	if ev.Pid == nil || *ev.Pid != 4242 || ev.PidInContainer != 7 || ev.Exe != "curl" || ev.Comm != "curl" || ev.Ppid != 4200 || ev.ParentComm != "sh" {
		t.Errorf("event %+v; want the process the kernel filed", ev)
	}

	// Not filed (yet): looked up again for a while, then printed without.
	other := fl
	other.Sport = 41001
	start := time.Now()
	ev = m.attributed(newEvent(time.Now(), other, 1000, true, enforcing, sourceNflog), enforcing, other)
	if ev.Pid != nil || time.Since(start) > time.Second {
		t.Errorf("an attempt not filed: %+v after %v", ev, time.Since(start))
	}

	auditing := &fence{rec: testrecord.New(2, idB, config.ModeAudit, config.LogNflog, idB), netnsCookie: 77}
	if ev := m.attributed(newEvent(time.Now(), fl, 1000, true, auditing, sourceNflog), auditing, fl); ev.Pid == nil || ev.Action != ActionAudited {
		t.Errorf("audited event %+v; want the process", ev)
	}
	fa.lookups = nil
	unreached := &fence{rec: testrecord.New(3, idB, config.ModeEnforce, config.LogNflog, idB)}
	m.attributed(newEvent(time.Now(), fl, 1000, true, unreached, sourceNflog), unreached, fl)
	if len(fa.lookups) != 0 {
		t.Errorf("looked up %v for a namespace without a cookie", fa.lookups)
	}
}

// TestAttributionDegrades: when the programs cannot be loaded, the monitor
// says so once, with why, and its events carry what they carry without.
func TestAttributionDegrades(t *testing.T) {
	m, hook := attribMonitor(t, func() (Attributor, error) {
		return nil, errors.New("the kernel has no BTF")
	})
	var warned int
	for _, e := range hook.AllEntries() {
		if err, ok := e.Data[logrus.ErrorKey].(error); ok && e.Level == logrus.WarnLevel && err.Error() == "the kernel has no BTF" {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings naming why attribution is off, want 1: %v", warned, hook.AllEntries())
	}
	if m.attr != nil {
		t.Fatal("attribution on after its load failed")
	}
	fl := Flow{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.10"), Sport: 1, Dst: netip.MustParseAddr("203.0.113.7"), Dport: 443}
	f := &fence{rec: testrecord.New(1, idA, config.ModeEnforce, config.LogNflog, idA)}
	if ev := m.attributed(newEvent(time.Now(), fl, 0, true, f, sourceNflog), f, fl); ev.Pid != nil || ev.Exe != "" || ev.Container != idA {
		t.Errorf("event without attribution: %+v", ev)
	}
}

// fencingAttributor records the cookies given to it.
type fencingAttributor struct {
	fakeAttributor
	fenced []uint64
}

func (f *fencingAttributor) Fence(c uint64) error { f.fenced = append(f.fenced, c); return nil }

// A create that takes over the record of a gone namespace whose number its
// own namespace got (the kernel gives a freed number to the next namespace
// made) is followed with its own namespace's cookie, not the gone one's:
// with the gone cookie, its attempts would name no process. The same
// namespace (the same file handle) keeps the cookie it has.
func TestCookieOfARecycledNumber(t *testing.T) {
	goneHandle := testrecord.GoneHandle(t)
	live := testrecord.Unshared(t)
	path, liveHandle := live.Path, live.Handle
	want, err := attrib.NetnsCookie(path)
	if err != nil {
		t.Skipf("skipping: %v", err)
	}

	fa := &fencingAttributor{}
	m, _ := attribMonitor(t, func() (Attributor, error) { return fa, nil })
	record := func(handle string) *records.Record {
		rec := testrecord.New(live.ID.Ino, idA, config.ModeEnforce, config.LogNflog, idA)
		rec.Netns, rec.NsHandle, rec.Paths = live.ID, handle, []string{path}
		return rec
	}
	const goneCookie = 5
	old := &fence{rec: record(goneHandle), netnsCookie: goneCookie}
	log := logrus.NewEntry(logrus.New())
	if got, failed := m.cookieOf(&fence{rec: record(liveHandle)}, old, log); got != want || failed || len(fa.fenced) != 1 {
		t.Errorf("the namespace that got a gone one's number: cookie %d (failed %v, fenced %v); want its own, %d", got, failed, fa.fenced, want)
	}
	same := &fence{rec: record(liveHandle), netnsCookie: want}
	if got, _ := m.cookieOf(&fence{rec: record(liveHandle)}, same, log); got != want || len(fa.fenced) != 1 {
		t.Errorf("the same namespace followed again: cookie %d, fenced %v; want %d kept, no new fencing", got, fa.fenced, want)
	}
}
