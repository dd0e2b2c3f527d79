// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testpolicy"
)

// fakeBackend fails an install whose rules use a feature it lacks, the way
// a kernel without the module does, or fails every install with err.
type fakeBackend struct {
	noConntrack, noLog bool
	err                error
	installed          rules.RuleSet
	calls              int
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Install(_ netns.Handle, rs rules.RuleSet) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	for _, fam := range rs {
		for _, r := range fam {
			if (f.noConntrack && r.Established) || (f.noLog && r.Action == rules.Log) {
				return fmt.Errorf("rule %s: %w", r, backend.ErrMissingFeature)
			}
		}
	}
	f.installed = rs
	return nil
}
func (f *fakeBackend) Inspect(netns.Handle) (backend.Seen, error) {
	seen := backend.Seen{Present: f.installed != nil, Rules: map[rules.Family]string{}}
	for fam, rs := range f.installed {
		seen.Rules[fam] = fmt.Sprint(len(rs), " rules")
	}
	return seen, nil
}
func (f *fakeBackend) Remove(netns.Handle) error                                { f.installed = nil; return nil }
func (f *fakeBackend) Counters(netns.Handle) (map[rules.Family][]uint64, error) { return nil, nil }

func TestInstallFallsBackOnlyForMissingFeatures(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	for _, tc := range []struct {
		name    string
		cfg     string
		backend *fakeBackend
		want    rules.Features
		wantErr error
	}{
		{"all there", testpolicy.Base, &fakeBackend{}, rules.AllFeatures, nil},
		{"no conntrack", testpolicy.Base, &fakeBackend{noConntrack: true}, rules.Features{Log: true}, nil},
		{"no log target", testpolicy.Base, &fakeBackend{noLog: true}, rules.Features{Conntrack: true}, nil},
		{"neither", testpolicy.Base, &fakeBackend{noConntrack: true, noLog: true}, rules.Features{}, nil},
		{"log required", testpolicy.Base + "log: {required: true}", &fakeBackend{noLog: true}, rules.Features{}, backend.ErrMissingFeature},
		{"audit cannot do without logging", testpolicy.Base + "mode: audit", &fakeBackend{noLog: true}, rules.Features{}, backend.ErrMissingFeature},
		{"another error is not retried", testpolicy.Base, &fakeBackend{err: errors.New("Rate too fast")}, rules.Features{}, errors.New("")},
		{"a lock timeout is not retried", testpolicy.Base, &fakeBackend{err: backend.ErrLockTimeout}, rules.Features{}, backend.ErrLockTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Hook{Log: log}
			rs, feat, sums, err := h.install(tc.backend, netns.Handle{}, testpolicy.Policy(t, tc.cfg), "c")
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("installed %v; want an error", feat)
				}
				if tc.wantErr.Error() != "" && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v, want %v", err, tc.wantErr)
				}
				if tc.backend.installed != nil {
					t.Error("a failed install left rules")
				}
				if tc.backend.err != nil && tc.backend.calls != 1 {
					t.Errorf("an error that is no missing feature was tried %d times", tc.backend.calls)
				}
				return
			}
			if err != nil || feat != tc.want {
				t.Fatalf("features %+v, %v; want %+v", feat, err, tc.want)
			}
			if rs.Count() == 0 || rs.Count() != tc.backend.installed.Count() {
				t.Errorf("returned %d rules, installed %d", rs.Count(), tc.backend.installed.Count())
			}
			if len(sums) != len(rules.Families) {
				t.Errorf("returned digests %v; want the backend's reading after the install, per family", sums)
			}
		})
	}
}
