// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testrecord"
)

// The poststop the plugin runs for a container it fenced late waits for
// the namespace's record lock within the runtime's request: with the lock
// held elsewhere for good, StopContainer answers with its own error, which
// names the lock, before the runtime's deadline for the request (its
// plugin_request_timeout, here 1 s, which ttrpc hands the plugin in its
// context). Without a deadline of its own it waited a hook stage's 8 s, and
// the runtime would have disconnected it.
func TestStopContainerEndsBeforeRequestTimeout(t *testing.T) {
	p, cfg, _ := latePlugin(t)
	p.cfg = cfg
	store, err := records.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	const id = "late-ctr"
	rec := testrecord.New(4242, id, config.ModeEnforce, config.LogKernel, id)
	if err := store.Save(rec); err != nil {
		t.Fatal(err)
	}
	unlock, err := store.Lock(rec.Netns.Key()) // a hook stuck with the lock
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	p.late.owned[id] = ""

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.StopContainer(ctx, &api.PodSandbox{}, &api.Container{Id: id})
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("StopContainer still waits after 30 s")
	}
	t.Logf("StopContainer with the record lock held: %s after %s", err, time.Since(start).Round(time.Millisecond))
	switch {
	case err == nil:
		t.Fatal("StopContainer succeeded with the record lock held elsewhere")
	case errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("StopContainer ended with the runtime's deadline, not its own error: %v", err)
	case !strings.Contains(err.Error(), "record lock") || !strings.Contains(err.Error(), id):
		t.Fatalf("StopContainer: %v; want the record lock and the container named", err)
	}
}

func TestOwnDeadline(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		runtime time.Duration // from now
		has     bool
		want    time.Duration // from now
	}{
		{"containerd's default plugin_request_timeout", 2 * time.Second, true, 1500 * time.Millisecond},
		{"a 1 s timeout", time.Second, true, 750 * time.Millisecond},
		{"a long timeout: a hook stage's budget", time.Minute, true, hook.StageBudget},
		{"no deadline: a hook stage's budget", 0, false, hook.StageBudget},
		{"past already", -time.Second, true, -750 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ownDeadline(now, now.Add(tc.runtime), tc.has).Sub(now); got != tc.want {
				t.Errorf("own deadline %s after now, want %s", got, tc.want)
			}
		})
	}
}
