package hook

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
)

// FenceError means the hook could not fence a container. Under
// failure: closed the container must not start (exit 1); under
// failure: open the hook warns and lets it start unfenced.
type FenceError struct {
	Netns string
	Err   error
}

func (e *FenceError) Error() string {
	if e.Netns == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("network namespace %s: %v", e.Netns, e.Err)
}

func (e *FenceError) Unwrap() error { return e.Err }

// RefusedError refuses a container on policy (strict mode, a conflicting
// policy in a shared namespace). failure: open does not let it through.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// Result says what a stage did, for the hook log.
type Result struct {
	Stage   Stage
	Netns   string
	Mode    string
	Backend string
	Rules   int
	Fenced  bool
	Action  string // what happened, in a few words
}

// Hook runs the hook stages with one config.
type Hook struct {
	Cfg *config.Config
	Log logrus.FieldLogger
	// NewBackend is NewBackend unless a test replaces it.
	NewBackend func(name string) (Backend, error)
}

// New returns a Hook for cfg that logs to log.
func New(cfg *config.Config, log logrus.FieldLogger) *Hook {
	return &Hook{Cfg: cfg, Log: log, NewBackend: NewBackend}
}

// Run runs one stage for the container in st.
func (h *Hook) Run(stage Stage, st *specs.State) (Result, error) {
	if stage == StagePoststop {
		return h.Poststop(st)
	}
	return h.Create(st)
}

// Create fences the container's network namespace, or joins the fence that
// another container of the namespace put there.
func (h *Hook) Create(st *specs.State) (Result, error) {
	res := Result{Stage: StageCreate, Backend: h.Cfg.Backend}
	dec, err := h.Cfg.Decide(st.Annotations)
	if err != nil {
		return res, err
	}
	if !dec.Fence {
		res.Action = "not fenced: " + dec.Reason
		return res, nil
	}
	res.Mode = dec.Policy.Mode
	if st.Pid <= 0 {
		return res, inputErr("the OCI state has no pid: register the hook for createRuntime or prestart, where the container process exists")
	}

	bundle, berr := ReadBundle(st.Bundle)
	switch {
	case berr != nil && h.Cfg.Strict:
		return res, &RefusedError{fmt.Sprintf("strict: the bundle's config.json cannot be read to check the process's capabilities: %v", berr)}
	case berr != nil:
		h.Log.WithError(berr).Warn("cannot read the bundle's config.json; the process's capabilities are not checked")
		bundle = &Bundle{}
	}
	if caps := bundle.DangerousCaps(); len(caps) > 0 {
		msg := fmt.Sprintf("the container process has %s, with which it can get past the fence (NET_ADMIN removes rules, NET_RAW sends through packet sockets)", strings.Join(caps, " and "))
		if h.Cfg.Strict {
			return res, &RefusedError{"strict: " + msg + "; drop them or set strict: false"}
		}
		h.Log.WithField("capabilities", caps).Warn(msg)
	}

	nsPath := PidNetnsPath(st.Pid)
	id, err := StatNetns(nsPath)
	if err != nil {
		return res, &FenceError{Err: fmt.Errorf("container process %d: %w (has it exited already?)", st.Pid, unwrapPath(err))}
	}
	res.Netns = id.String()
	hosts, err := HostNetns()
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	if slices.Contains(hosts, id) {
		return res, &FenceError{Netns: res.Netns, Err: errors.New("the container shares the host's network namespace; rules there would cut off the host, so it cannot be fenced (give it a network namespace of its own, or do not select it)")}
	}
	h.warnLogSysctl(dec.Policy)

	store, err := OpenStore(h.Cfg.StateDir)
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	if pruned := store.Prune(id.Key()); len(pruned) > 0 {
		h.Log.WithField("records", pruned).Info("pruned records of network namespaces that no longer exist")
	}
	unlock, err := store.Lock(id.Key())
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	defer unlock()

	ns := Netns{ID: id, Path: nsPath}
	owner := Owner{ID: st.ID, Pid: st.Pid, Bundle: st.Bundle, Since: time.Now().UTC()}
	rec, err := store.Load(id.Key())
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	if rec != nil {
		joined, err := h.join(store, rec, ns, owner, dec.Policy, &res)
		if joined || err != nil {
			return res, err
		}
	}

	backend, err := h.NewBackend(h.Cfg.Backend)
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	rs, caps, err := h.install(backend, ns, dec.Policy, st.ID)
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	rec = &Record{
		Netns:     id,
		Paths:     compact(nsPath, bundle.NetnsPath),
		Backend:   backend.Name(),
		Digest:    dec.Policy.Digest(),
		Policy:    dec.Policy,
		Caps:      caps,
		LogID:     st.ID,
		RuleNames: ruleNames(rs),
		Owners:    []Owner{owner},
		Installed: time.Now().UTC(),
	}
	if err := store.Save(rec); err != nil {
		// Rules without a record would never be removed by poststop.
		if rerr := backend.Remove(ns); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the rules again: %w", rerr))
		}
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	res.Rules, res.Fenced, res.Action = rs.Count(), true, "fenced"
	return res, nil
}

// join handles a namespace that has a record already. It returns joined
// when the container now shares a fence that is in place.
func (h *Hook) join(store *Store, rec *Record, ns Netns, owner Owner, p config.Policy, res *Result) (bool, error) {
	live := slices.DeleteFunc(slices.Clone(rec.Owners), func(o Owner) bool {
		return o.ID != owner.ID && !o.alive(rec.Netns)
	})
	if len(live) < len(rec.Owners) {
		h.Log.WithField("owners", len(rec.Owners)-len(live)).Info("dropped owners whose process is gone without a poststop")
	}
	if len(live) == 0 {
		// Only dead owners: the fence (if still there) is stale; replace it.
		if b, err := h.NewBackend(rec.Backend); err == nil {
			if err := b.Remove(ns); err != nil {
				h.Log.WithError(err).Warn("removing a stale fence")
			}
		}
		return false, nil
	}
	first := live[0].ID
	if rec.Backend != h.Cfg.Backend {
		return false, &RefusedError{fmt.Sprintf("network namespace %s is fenced by the %s backend for container %s; this container asks for %s: containers sharing a namespace need one backend",
			rec.Netns, rec.Backend, first, h.Cfg.Backend)}
	}
	if rec.Digest != p.Digest() {
		return false, &RefusedError{fmt.Sprintf("network namespace %s is fenced for container %s with another policy (%s); containers that share a network namespace must have the same policy (this one: %s)",
			rec.Netns, first, describe(rec.Policy), describe(p))}
	}
	backend, err := h.NewBackend(rec.Backend)
	if err != nil {
		return false, &FenceError{Netns: res.Netns, Err: err}
	}
	ok, err := backend.Installed(ns)
	if err != nil {
		return false, &FenceError{Netns: res.Netns, Err: err}
	}
	if !ok {
		h.Log.Warn("the record says this namespace is fenced but the rules are gone; installing them again")
		rs, caps, err := h.install(backend, ns, p, rec.LogID)
		if err != nil {
			return false, &FenceError{Netns: res.Netns, Err: err}
		}
		rec.Caps, rec.RuleNames = caps, ruleNames(rs)
	}
	if !slices.ContainsFunc(live, func(o Owner) bool { return o.ID == owner.ID }) {
		live = append(live, owner)
	}
	rec.Owners = live
	if err := store.Save(rec); err != nil {
		return false, &FenceError{Netns: res.Netns, Err: err}
	}
	res.Fenced, res.Action = true, "joined the fence of container "+first
	for _, names := range rec.RuleNames {
		res.Rules += len(names)
	}
	return true, nil
}

// install activates the fence, falling back to fewer optional features on
// a kernel that lacks them: the refusals must not depend on logging or
// conntrack being there.
func (h *Hook) install(b Backend, ns Netns, p config.Policy, logID string) (RuleSet, Caps, error) {
	var firstErr error
	for _, caps := range []Caps{FullCaps, {Conntrack: true}, {Log: true}, {}} {
		if !caps.Log && (p.Log.Required || p.Mode == config.ModeAudit) {
			continue // without logging, audit mode does nothing at all
		}
		rs := RuleSet{}
		for _, fam := range Families {
			rs[fam] = Rules(p, logID, fam, caps)
		}
		err := b.Install(ns, rs)
		if err == nil {
			if !caps.Log {
				h.Log.WithError(firstErr).Warn("the kernel has no LOG/NFLOG target or limit match: the fence refuses but does not log (set log.required: true to fail instead)")
			}
			if !caps.Conntrack {
				h.Log.WithError(firstErr).Warn("the kernel has no conntrack match: only new TCP connections are refused; UDP and other protocols pass")
			}
			return rs, caps, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if errors.Is(err, ErrLockTimeout) {
			break
		}
	}
	return nil, Caps{}, firstErr
}

func (h *Hook) warnLogSysctl(p config.Policy) {
	if p.Log.Target != config.LogKernel {
		return
	}
	data, err := os.ReadFile("/proc/sys/net/netfilter/nf_log_all_netns")
	if err == nil && strings.TrimSpace(string(data)) == "0" {
		h.Log.Warn("net.netfilter.nf_log_all_netns is 0 on the host: the kernel drops LOG lines of container namespaces; set it to 1 (sysctl -w net.netfilter.nf_log_all_netns=1) or use log.target: nflog")
	}
}

// Poststop removes the container from its namespace's owners and, with the
// last owner, takes the fence out if the namespace still exists.
func (h *Hook) Poststop(st *specs.State) (Result, error) {
	res := Result{Stage: StagePoststop}
	store, err := OpenStore(h.Cfg.StateDir)
	if err != nil {
		return res, err
	}
	key, ok := store.FindOwner(st.ID)
	var bundle *Bundle
	if !ok {
		// No record names it: perhaps never fenced (not selected), or
		// already removed by an earlier poststop.
		res.Action = "nothing to do: no record owned by this container"
		return res, nil
	}
	unlock, err := store.Lock(key)
	if err != nil {
		return res, err
	}
	defer unlock()
	rec, err := store.Load(key)
	if err != nil || rec == nil || !rec.HasOwner(st.ID) {
		res.Action = "nothing to do: the record changed meanwhile"
		return res, err
	}
	res.Netns, res.Mode, res.Backend = rec.Netns.String(), rec.Policy.Mode, rec.Backend
	rec.RemoveOwner(st.ID)
	if len(rec.Owners) > 0 {
		res.Action = fmt.Sprintf("left the fence; %d owner(s) remain", len(rec.Owners))
		return res, store.Save(rec)
	}

	if b, err := ReadBundle(st.Bundle); err == nil {
		bundle = b
	} else {
		bundle = &Bundle{}
	}
	ns, found := FindNetns(rec.Netns, append(rec.Paths, bundle.NetnsPath)...)
	if !found {
		res.Action = "namespace gone; record removed"
		return res, store.Delete(key)
	}
	backend, err := h.NewBackend(rec.Backend)
	if err != nil {
		return res, err
	}
	h.logSummary(backend, ns, rec)
	if err := backend.Remove(ns); err != nil {
		return res, fmt.Errorf("removing the fence from network namespace %s (%s): %w", rec.Netns, ns.Path, err)
	}
	res.Action = "fence removed"
	return res, store.Delete(key)
}

// logSummary writes the last counters of the fence into the hook log.
func (h *Hook) logSummary(b Backend, ns Netns, rec *Record) {
	counters, err := b.Counters(ns)
	if err != nil {
		h.Log.WithError(err).Warn("reading the fence's counters")
		return
	}
	sums, t := TallyCounters(rec.RuleNames, counters)
	fields := logrus.Fields{"log_id": rec.LogID, "refused_tcp": t.RefusedTCP, "refused_udp": t.RefusedUDP,
		"refused_other": t.RefusedOther, "logged": t.Logged}
	for name, n := range sums {
		fields["packets_"+name] = n
	}
	h.Log.WithFields(fields).Info("fence summary: attempts refused and logged over the fence's life")
}

func ruleNames(rs RuleSet) map[Family][]string {
	out := map[Family][]string{}
	for fam, rules := range rs {
		for _, r := range rules {
			out[fam] = append(out[fam], r.Name)
		}
	}
	return out
}

func describe(p config.Policy) string {
	var proxies []string
	for _, ap := range p.Proxies {
		proxies = append(proxies, ap.String())
	}
	return fmt.Sprintf("mode %s, proxies %s, digest %s", p.Mode, strings.Join(proxies, ","), p.Digest())
}

func compact(paths ...string) []string {
	return slices.DeleteFunc(paths, func(s string) bool { return s == "" })
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// ExitCode maps a stage's error to the hook's exit code: 0 done (or, under
// failure: open, could not fence), 1 could not fence or refused, 2 usage,
// input or config error.
func ExitCode(err error, failure string) int {
	var cfgErr *config.Error
	var annErr *config.AnnotationError
	var inErr *InputError
	var fenceErr *FenceError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cfgErr), errors.As(err, &annErr), errors.As(err, &inErr):
		return 2
	case errors.As(err, &fenceErr) && failure == config.FailOpen:
		return 0
	}
	return 1
}
