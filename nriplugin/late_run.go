// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// late keeps the containers the plugin fenced late, whose poststop stage
// is the plugin's to run, and those it could not fence.
type late struct {
	// pass is held by a late-fencing pass from start to end: the passes
	// of two synchronizations (a reconnect while one still runs) take
	// turns, never overlap.
	pass sync.Mutex
	// save is held while the unfenced list is written: one writer at a
	// time, and the last one writes the latest list.
	save sync.Mutex
	// testPass, when set, runs inside each pass: tests make passes slow.
	testPass func()
	mu       sync.Mutex
	owned    map[string]string // container id → bundle, as recorded
	pending  map[string]bool   // in the pass under way
	stopped  map[string]bool   // stopped while pending
	unfenced map[string]records.Unfenced
}

func newLate() *late {
	return &late{owned: map[string]string{}, pending: map[string]bool{}, stopped: map[string]bool{}, unfenced: map[string]records.Unfenced{}}
}

// Synchronize is the runtime's account of its pods and containers, right
// after registration. The plugin fences the containers that started
// without the hook in the background: the runtime holds every container's
// creation while it waits for this answer, within its request timeout.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	cfg, target, broken := p.current()
	items := selectLate(cfg, broken, pods, ctrs, target.Binary)
	gen := p.generation()
	p.late.mu.Lock()
	// The runtime's account is whole: what was unfenced and is not in it
	// any more has stopped.
	clear(p.late.unfenced)
	for _, it := range items {
		p.late.pending[it.Ctr.GetId()] = true
	}
	p.late.mu.Unlock()
	p.health.set(false, "synchronized; fencing the containers that started without the hook")
	go func() {
		p.fenceLate(cfg, items)
		if p.generation() == gen {
			p.health.set(true, "")
		}
	}()
	return nil, nil
}

// fenceLate fences each container of a synchronization, or reports why it
// cannot.
func (p *Plugin) fenceLate(cfg *config.Config, items []lateItem) {
	p.late.pass.Lock()
	defer p.late.pass.Unlock()
	if p.late.testPass != nil {
		p.late.testPass()
	}
	began := time.Now()
	fenced := 0
	for _, it := range items {
		id := it.Ctr.GetId()
		entry := p.log.WithFields(logrus.Fields{"pod": podName(it.Pod), "container": it.Ctr.GetName(), "id": id})
		var st *specs.State
		why := it.Cannot
		if why == "" {
			var res hook.Result
			var selected bool
			var err error
			t0 := time.Now()
			it, st, res, selected, err = p.lateCreate(it)
			if !selected {
				entry.Info("NRI: the config in force no longer selects a container that started without the hook")
				p.lateDone(it, nil, "")
				continue
			}
			why = it.Cannot
			entry = entry.WithFields(logrus.Fields{"netns": res.Netns, "action": res.Action, "duration_ms": float64(time.Since(t0).Microseconds()) / 1000})
			switch {
			case why != "":
			case err != nil:
				why = err.Error()
			case res.Action == "fenced":
				fenced++
				p.health.lateFenced.Inc()
				entry.WithField("rules", res.Rules).Warn("NRI: late-fenced a container that started while the plugin was away; connections it opened before now keep flowing until they close")
			default:
				entry.Info("NRI: a container that started without the hook is in a fence already")
			}
		}
		if why != "" {
			p.health.lateFailed.Inc()
			entry.WithField("reason", why).Error("NRI: a selected container runs WITHOUT the fence and cannot be fenced")
		}
		p.lateDone(it, st, why)
	}
	p.saveUnfenced(cfg)
	if len(items) > 0 {
		p.log.WithFields(logrus.Fields{"fenced": fenced, "seen": len(items), "duration_ms": float64(time.Since(began).Microseconds()) / 1000}).
			Info("NRI: late fencing done")
	}
}

// lateCreate runs the create stage for a container a pass reaches, with
// the config in force now, decided again: a pass waits for the one before
// it and takes up to a hook stage's time per container, and a config
// changed meanwhile is applied to the fences recorded then, not to those
// the pass puts in afterwards. A config loaded while the create ran may
// have had its apply reach the namespace first (the create waited for the
// namespace's lock beside it), and the create then put the older back: it
// runs again with the newer. selected is false when the config no longer
// selects the container (and no create of it ran); it comes back with
// Cannot set when it cannot be fenced, and st nil unless it was tried.
// Once a create put a fence in, the container stays the plugin's to run
// the poststop of, whatever the newer config says.
func (p *Plugin) lateCreate(it lateItem) (again lateItem, st *specs.State, res hook.Result, selected bool, err error) {
	for range maxLateTries {
		p.current()
		p.mu.Lock()
		cfg, target, broken, stamp := p.cfg, p.target, p.broken, p.stamp
		p.mu.Unlock()
		next, ok := lateChoice(cfg, broken, it.Pod, it.Ctr, target.Binary)
		if !ok || next.Cannot != "" {
			if st != nil && err == nil {
				// A create before put a fence in, which no apply removes:
				// its poststop stays the plugin's.
				break
			}
			return next, nil, res, ok, nil
		}
		again = next
		st = lateState(again)
		h := hook.New(cfg, p.log.WithField("stage", "late-create"))
		h.Netns = again.Netns
		res, err = h.Create(st)
		p.mu.Lock()
		same := p.stamp == stamp
		p.mu.Unlock()
		if same {
			break
		}
	}
	return again, st, res, true, err
}

// maxLateTries bounds the creates of one late fence while its config keeps
// changing under it; the applies of those configs follow in any case.
const maxLateTries = 4

// lateDone ends one container's late fencing: its poststop is now the
// plugin's, and runs at once if the container stopped meanwhile.
func (p *Plugin) lateDone(it lateItem, st *specs.State, why string) {
	id := it.Ctr.GetId()
	p.late.mu.Lock()
	delete(p.late.pending, id)
	stopped := p.late.stopped[id]
	delete(p.late.stopped, id)
	switch {
	case stopped:
	case why != "":
		p.late.unfenced[id] = records.Unfenced{ID: id, Pid: int(it.Ctr.GetPid()), Identity: oci.IdentityOf(it.Ctr.GetAnnotations()), Reason: why, Seen: time.Now().UTC()}
	case st != nil:
		p.late.owned[id] = st.Bundle
	}
	p.late.mu.Unlock()
	if stopped && st != nil && why == "" {
		// The runtime's request was answered already: the stage's budget.
		_ = p.poststop(id, st.Bundle, time.Now().Add(hook.StageBudget))
	}
}

// StopContainer runs the poststop stage for a container the plugin fenced
// late: NRI cannot give a running container a poststop hook. Its waits end
// before the runtime's deadline for the answer (see requestDeadline): a
// poststop that cannot finish in time ends with its own error, which the
// runtime logs, and the plugin stays connected.
func (p *Plugin) StopContainer(ctx context.Context, _ *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	id := ctr.GetId()
	p.late.mu.Lock()
	if p.late.pending[id] {
		p.late.stopped[id] = true
		p.late.mu.Unlock()
		return nil, nil
	}
	bundle, owned := p.late.owned[id]
	delete(p.late.owned, id)
	_, wasUnfenced := p.late.unfenced[id]
	delete(p.late.unfenced, id)
	p.late.mu.Unlock()
	var err error
	if owned {
		err = p.poststop(id, bundle, requestDeadline(ctx))
	}
	if wasUnfenced {
		cfg, _, _ := p.current()
		p.saveUnfenced(cfg)
	}
	return nil, err
}

// requestMargin is the share of a request's time that the plugin keeps
// for itself after its own waits have ended: to log and answer.
const requestMargin = 4

// requestDeadline is when the plugin's waits (a record's lock, the xtables
// lock) end in a request the runtime made with ctx: a quarter of the time
// it gives before its deadline, and never later than a hook stage's budget.
// The runtime gives each request its plugin_request_timeout (containerd:
// 2 s by default) and disconnects a plugin that has not answered by then,
// which then misses the containers created until it is back; an answer
// with the plugin's own error keeps it connected.
func requestDeadline(ctx context.Context) time.Time {
	runtime, ok := ctx.Deadline()
	return ownDeadline(time.Now(), runtime, ok)
}

// ownDeadline is requestDeadline at now, for a request the runtime gives
// up on at runtime (if has).
func ownDeadline(now, runtime time.Time, has bool) time.Time {
	deadline := now.Add(hook.StageBudget)
	if own := now.Add(runtime.Sub(now) * (requestMargin - 1) / requestMargin); has && own.Before(deadline) {
		deadline = own
	}
	return deadline
}

// poststop runs the hook's poststop stage for container id, its waits
// ending at deadline.
func (p *Plugin) poststop(id, bundle string, deadline time.Time) error {
	cfg, _, _ := p.current()
	h := hook.New(cfg, p.log.WithField("stage", "late-poststop"))
	h.Deadline = deadline
	res, err := h.Poststop(&specs.State{Version: specs.Version, ID: id, Status: specs.StateStopped, Bundle: bundle})
	entry := p.log.WithFields(logrus.Fields{"id": id, "netns": res.Netns, "action": res.Action})
	if err != nil {
		entry.WithError(err).Error("NRI: the poststop stage of a container fenced late failed; its fence stays until `bypass-hook prune` or the monitor finds its namespace abandoned")
		return fmt.Errorf("bypass-hook NRI plugin: the poststop stage of container %s, fenced late, failed: %w; its fence stays until `bypass-hook prune` or the monitor finds its namespace abandoned", id, err)
	}
	entry.Info("NRI: ran the poststop stage of a container fenced late")
	return nil
}

// saveUnfenced writes the containers that run without a fence where
// `status` shows them.
func (p *Plugin) saveUnfenced(cfg *config.Config) {
	p.late.save.Lock()
	defer p.late.save.Unlock()
	p.late.mu.Lock()
	list := make([]records.Unfenced, 0, len(p.late.unfenced))
	for _, u := range p.late.unfenced {
		list = append(list, u)
	}
	p.late.mu.Unlock()
	p.health.unfenced.Set(float64(len(list)))
	store, err := records.Open(cfg.StateDir)
	if err == nil {
		err = store.SaveUnfenced(list)
	}
	if err != nil {
		p.log.WithError(err).Warn("NRI: cannot write the list of unfenced containers for status")
	}
}

func podName(pod *api.PodSandbox) string {
	if pod.GetName() == "" {
		return ""
	}
	return pod.GetNamespace() + "/" + pod.GetName()
}
