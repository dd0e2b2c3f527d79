package hook

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sirupsen/logrus"
)

// fakeBackend fails an install whose rules use a feature it lacks, the way
// a kernel without the module does, or fails every install with err.
type fakeBackend struct {
	noConntrack, noLog bool
	err                error
	installed          RuleSet
	calls              int
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Install(_ Netns, rs RuleSet) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	for _, rules := range rs {
		for _, r := range rules {
			if (f.noConntrack && r.Established) || (f.noLog && r.Action == Log) {
				return fmt.Errorf("rule %s: %w", r, ErrMissingFeature)
			}
		}
	}
	f.installed = rs
	return nil
}
func (f *fakeBackend) Installed(Netns) (bool, error)               { return f.installed != nil, nil }
func (f *fakeBackend) Remove(Netns) error                          { f.installed = nil; return nil }
func (f *fakeBackend) Counters(Netns) (map[Family][]uint64, error) { return nil, nil }

func TestInstallFallsBackOnlyForMissingFeatures(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	for _, tc := range []struct {
		name    string
		cfg     string
		backend *fakeBackend
		want    Features
		wantErr error
	}{
		{"all there", baseCfg, &fakeBackend{}, AllFeatures, nil},
		{"no conntrack", baseCfg, &fakeBackend{noConntrack: true}, Features{Log: true}, nil},
		{"no log target", baseCfg, &fakeBackend{noLog: true}, Features{Conntrack: true}, nil},
		{"neither", baseCfg, &fakeBackend{noConntrack: true, noLog: true}, Features{}, nil},
		{"log required", baseCfg + "log: {required: true}", &fakeBackend{noLog: true}, Features{}, ErrMissingFeature},
		{"audit cannot do without logging", baseCfg + "mode: audit", &fakeBackend{noLog: true}, Features{}, ErrMissingFeature},
		{"another error is not retried", baseCfg, &fakeBackend{err: errors.New("Rate too fast")}, Features{}, errors.New("")},
		{"a lock timeout is not retried", baseCfg, &fakeBackend{err: ErrLockTimeout}, Features{}, ErrLockTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Hook{Log: log}
			rs, feat, err := h.install(tc.backend, Netns{}, policy(t, tc.cfg), "c")
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
		})
	}
}
