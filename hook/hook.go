// SPDX-License-Identifier: Apache-2.0

// Package hook runs the OCI hook stages: create reads the state, decides
// from the config, opens the container's network namespace, fences it and
// records the owner; poststop drops the owner and, with the last, removes the
// fence. The pieces it strings together live in its sub-packages.
package hook

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/fserr"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/oci"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
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
	Stage   oci.Stage
	Netns   string
	Mode    string
	Backend string
	Rules   int
	Action  string // what happened, in a few words
}

// Hook runs the hook stages with one config.
type Hook struct {
	Cfg *config.Config
	Log logrus.FieldLogger
	// Device is the CDI device of config.CDIKind the container requested,
	// "" when the hook was not registered through CDI.
	Device string
	// NewBackend is NewBackend unless a test replaces it.
	NewBackend func(name string) (backend.Backend, error)
	// Deadline ends every wait of a stage (the record lock, the xtables
	// lock): set from the stage's start, below the runtime's hook timeout,
	// so that the hook fails with its own error, never a SIGKILL. Zero
	// means StageBudget from the start of Run.
	Deadline time.Time
	// Netns, when set, is the path of the namespace Create fences in
	// place of the state's pid's: the NRI plugin's late fence names the
	// pod's, which the workload cannot move as it can its pid 1.
	Netns string

	// pruneStore is the state directory's store that prune keeps between
	// calls (the monitor's, at every resync).
	pruneStore *records.Store
}

// StageBudget is how long a stage may wait in all, from its start: below
// the 10 s hook timeout with which bypass-hook registers itself, with
// time left to say why it gave up.
const StageBudget = 8 * time.Second

// New returns a Hook for cfg that logs to log.
func New(cfg *config.Config, log logrus.FieldLogger) *Hook {
	return &Hook{Cfg: cfg, Log: log, NewBackend: backend.New}
}

// Run runs one stage for the container in st.
func (h *Hook) Run(stage oci.Stage, st *specs.State) (Result, error) {
	if h.Deadline.IsZero() {
		h.Deadline = time.Now().Add(StageBudget)
	}
	if stage == oci.StagePoststop {
		return h.Poststop(st)
	}
	return h.Create(st)
}

// Create fences the container's network namespace, or joins the fence that
// another container of the namespace put there.
func (h *Hook) Create(st *specs.State) (Result, error) {
	res := Result{Stage: oci.StageCreate, Backend: h.Cfg.Backend}
	dec, err := h.Cfg.DecideDevice(st.Annotations, h.Device)
	if err != nil {
		return res, err
	}
	if !dec.Fence {
		res.Action = "not fenced: " + dec.Reason
		return res, nil
	}
	res.Mode = dec.Policy.Mode
	if st.Pid <= 0 {
		return res, &oci.InputError{Msg: "the OCI state has no pid: register the hook for createRuntime or prestart, where the container process exists"}
	}
	bundle, err := h.checkCapabilities(st.Bundle, dec.Policy)
	if err != nil {
		return res, err
	}

	nsPath := netns.PidPath(st.Pid)
	if h.Netns != "" {
		nsPath = h.Netns
	}
	ns, closeNs, err := netns.Open(nsPath)
	if err != nil && h.Netns != "" {
		return res, &FenceError{Err: fmt.Errorf("the pod's network namespace: %w", fserr.WithPath(err))}
	}
	if err != nil {
		return res, &FenceError{Err: fmt.Errorf("container process %d: %w (has it exited already?)", st.Pid, fserr.WithPath(err))}
	}
	defer closeNs()
	id := ns.ID
	res.Netns = id.String()
	if err := netns.NotHost(id); err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	h.warnLogSysctl(dec.Policy)

	store, rec, unlock, err := h.loadLocked(id.Key())
	if err != nil {
		return res, &FenceError{Netns: res.Netns, Err: err}
	}
	defer unlock()

	// The handle of the namespace held now, in the record whatever it held
	// before: one of a namespace that is gone, whose inode number this one
	// reuses, would have the next prune take this one's record.
	handle := netns.FileHandle(ns)
	owner := records.Owner{ID: st.ID, Pid: st.Pid, Bundle: st.Bundle, Start: records.StartOf(st.Pid), Cgroup: records.CgroupOf(st.Pid), Since: time.Now().UTC(), Identity: oci.IdentityOf(st.Annotations)}
	digest := dec.Policy.Digest()
	recorded := ""
	if rec != nil {
		// A record written before it had the handle (or of a namespace
		// whose inode number this one reuses) is saved with it.
		handleMoved := rec.NsHandle != handle
		recorded, rec.NsHandle = rec.Backend, handle
		joined, err := h.join(store, rec, ns, owner, dec, digest, handleMoved, &res)
		if joined || err != nil {
			return res, err
		}
	}

	fresh := &records.Record{
		Netns:    id,
		NsHandle: handle,
		Paths:    compact(nsPath, bundle.NetnsPath),
		Digest:   digest,
		Policy:   dec.Policy,
		LogID:    st.ID,
		Owners:   []records.Owner{owner},

		// What the annotations asked for, kept apart from the config's
		// part so that a config change can be told from them (join, apply).
		Narrowing: &dec.Narrowing,
	}
	fresh.Replaces(rec) // the owners of the record it replaces lose their index entries
	err = h.fence(store, ns, fresh, recorded, &res)
	return res, err
}

// deadline is the end of the stage's waits.
func (h *Hook) deadline() time.Time {
	if h.Deadline.IsZero() {
		return time.Now().Add(StageBudget)
	}
	return h.Deadline
}

// backend makes the backend name, whose waits (the xtables lock) end at
// the stage's deadline.
func (h *Hook) backend(name string) (backend.Backend, error) {
	b, err := h.NewBackend(name)
	if d, ok := b.(interface{ SetDeadline(time.Time) }); ok && err == nil {
		d.SetDeadline(h.deadline())
	}
	return b, err
}

// checkCapabilities reads the bundle's config.json for the capabilities
// with which the container process can get past the fence: strict mode
// refuses them (and a config.json it cannot read), otherwise the hook warns.
// The bundle is empty when its config.json cannot be read.
func (h *Hook) checkCapabilities(path string, p config.Policy) (*oci.Bundle, error) {
	bundle, berr := oci.ReadBundle(path)
	switch {
	case berr != nil && h.Cfg.Strict:
		return nil, &RefusedError{fmt.Sprintf("strict: the bundle's config.json cannot be read to check the process's capabilities: %v", berr)}
	case berr != nil:
		h.Log.WithError(berr).Warn("cannot read the bundle's config.json; the process's capabilities are not checked")
		bundle = &oci.Bundle{}
	}
	if caps := bundle.DangerousCaps(len(p.AllowUids) > 0); len(caps) > 0 {
		msg := fmt.Sprintf("the container process has %s, with which it can get past the fence (NET_ADMIN removes rules, NET_RAW sends through packet sockets, SETUID becomes one of the allowUids)", strings.Join(caps, " and "))
		if h.Cfg.Strict {
			return nil, &RefusedError{"strict: " + msg + "; drop them or set strict: false"}
		}
		h.Log.WithField("capabilities", caps).Warn(msg)
	}
	return bundle, nil
}

// loadLocked opens the record store, locks the record of key and loads it:
// nil when the namespace has none. Records of namespaces that are gone are
// pruned first. The caller unlocks.
func (h *Hook) loadLocked(key string) (*records.Store, *records.Record, func(), error) {
	store, err := records.Open(h.Cfg.StateDir)
	if err != nil {
		return nil, nil, nil, err
	}
	if pruned := store.DropGoneNamespaces(key); len(pruned) > 0 {
		h.Log.WithField("records", pruned).Info("pruned records of network namespaces that no longer exist")
	}
	unlock, err := store.LockBy(key, h.deadline())
	if err != nil {
		return nil, nil, nil, err
	}
	rec, err := store.Load(key)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return store, rec, unlock, nil
}

// fence installs the fence that rec describes and saves rec with what the
// install made. recorded is the backend of the record that was there
// before, "" when there was none.
func (h *Hook) fence(store *records.Store, ns netns.Handle, rec *records.Record, recorded string, res *Result) error {
	name := backend.Choose(h.Cfg.Backend, recorded, func() bool {
		err := backend.NftablesAvailable(ns.Path)
		if err != nil {
			h.Log.WithError(err).Info("backend auto: the kernel has no nf_tables here; using iptables")
		}
		return err == nil
	})
	res.Backend = name
	backend, err := h.backend(name)
	if err != nil {
		return &FenceError{Netns: res.Netns, Err: err}
	}
	// The record goes first, marked incomplete (see SaveIntent).
	rec.Backend = backend.Name()
	if err := store.SaveIntent(rec, records.IncompleteInstall); err != nil {
		return &FenceError{Netns: res.Netns, Err: err}
	}
	rs, feat, sums, err := h.install(backend, ns, rec.Policy, rec.LogID)
	if err != nil {
		return &FenceError{Netns: res.Netns, Err: undo(store, backend, ns, rec, err)}
	}
	rec.RulesDigest, rec.Features, rec.RuleNames = sums, feat, ruleNames(rs)
	rec.Installed, rec.Incomplete = time.Now().UTC(), ""
	if err := store.Save(rec); err != nil {
		return &FenceError{Netns: res.Netns, Err: undo(store, backend, ns, rec, err)}
	}
	res.Rules, res.Action = rs.Count(), "fenced"
	return nil
}

// undo takes out what a create that failed after its record's first save
// may have put in: the rules, then the record. Where the rules cannot be
// removed, the record stays, incomplete, for prune or the next create.
func undo(store *records.Store, b backend.Backend, ns netns.Handle, rec *records.Record, err error) error {
	if rerr := b.Remove(ns); rerr != nil {
		return errors.Join(err, fmt.Errorf("removing the rules again: %w (the record stays, marked incomplete: `bypass-hook prune`, the monitor or the next create in the namespace resolves it)", rerr))
	}
	if derr := store.Drop(rec); derr != nil {
		return errors.Join(err, fmt.Errorf("removing the record again: %w", derr))
	}
	return err
}

// join handles a namespace that has a record already. It returns joined
// when the container now shares (or again owns) a fence that is in place,
// and false when the caller is to install the fence.
func (h *Hook) join(store *records.Store, rec *records.Record, ns netns.Handle, owner records.Owner, dec config.Decision, digest string, handleMoved bool, res *Result) (bool, error) {
	// The very process the record names again (the NRI plugin fences the
	// running containers at every synchronization): it keeps the entry it
	// has, with the time it was first fenced, which status shows.
	var again bool
	for _, o := range rec.Owners {
		if o.Is(owner.ID, owner.Bundle) && o.Pid == owner.Pid && o.Start == owner.Start && owner.Start != 0 && o.StaleSince.IsZero() {
			owner, again = o, true
		}
	}
	others := h.otherOwners(rec, owner, ns)
	// Under auto, the namespace keeps the backend that fenced it.
	want := rec.Backend
	if h.Cfg.Backend != config.BackendAuto {
		want = h.Cfg.Backend
	}
	res.Backend = rec.Backend
	if len(others) > 0 && rec.Backend != want {
		h.Log.WithField("backend", rec.Backend).Infof("the config asks for the %s backend; this namespace keeps %s, which its other containers' fence uses, until they end", want, rec.Backend)
	}
	p := dec.Policy
	action := decideJoin(rec, len(others) > 0, want, digest, dec)
	if action == joinInPlace && len(others) == 0 && rec.LogID != owner.ID {
		// Its owners are all gone without a poststop: this container is not
		// theirs (a namespace a bind mount kept, or a new one with the dead
		// one's inode number), and its attempts are logged under its own id.
		action = installOver
	}
	switch action {
	case refuseNarrowing:
		return false, &RefusedError{fmt.Sprintf("network namespace %s is fenced for container %s with another policy (%s); containers that share a network namespace must have the same policy, and this one's annotations ask for another (%s)",
			rec.Netns, others[0].ID, describe(rec.Policy), describe(p))}
	case removeThenInstall:
		// No one else uses the old fence, but another backend made it: it
		// must go before ours goes in. The record says so first.
		old, err := h.backend(rec.Backend)
		if err == nil {
			err = store.SaveIntent(rec, records.IncompleteSwitch)
		}
		if err == nil {
			err = old.Remove(ns)
		}
		if err != nil {
			return false, &FenceError{Netns: res.Netns, Err: fmt.Errorf("removing the %s fence no container uses any more: %w", rec.Backend, err)}
		}
		return false, nil
	case installOver:
		return false, nil // no one else uses it: Install replaces it atomically
	case followConfig:
		if err := h.followConfig(store, ns, rec, dec, digest); err != nil {
			return false, &FenceError{Netns: res.Netns, Err: err}
		}
	case joinInPlace:
		if err := h.makeWhole(store, ns, rec, p); err != nil {
			return false, &FenceError{Netns: res.Netns, Err: err}
		}
	}

	// Nothing to write when nothing changed: the same owners, the fence
	// whole as recorded (makeWhole marks a record it installs again).
	unchanged := again && !handleMoved && action == joinInPlace && rec.Incomplete == "" && len(others) == len(rec.Owners)-1
	rec.Owners, rec.Incomplete = append(others, owner), ""
	if !unchanged {
		if err := store.Save(rec); err != nil {
			return false, &FenceError{Netns: res.Netns, Err: err}
		}
	}
	res.Action = "already fenced"
	if len(others) > 0 {
		res.Action = "joined the fence of container " + others[0].ID
	}
	if action == followConfig {
		res.Action += ", replaced with the newest config's"
	}
	for _, names := range rec.RuleNames {
		res.Rules += len(names)
	}
	return true, nil
}

// otherOwners returns the owners of rec that stay beside owner. This
// container replaces any entry of its own (a container created again under
// its id and bundle has a new pid); owners whose process is gone leave.
// Another runtime's container of the same id has another bundle: it stays
// an owner. So does one whose first process still runs in another network
// namespace, or whose cgroup still holds a process, while the fence is
// still in this one: a workload controls its pid 1, which may have moved
// into a namespace of its own, or exited (in a container without a pid
// namespace of its own), and left its workers here, and its runtime calls
// its poststop when it ends; dropped,
// the poststop of this container would take the fence out from under the
// workers. Where no fence is left in the namespace, it is not the one that
// owner left (a new namespace with the old one's inode number): it leaves.
func (h *Hook) otherOwners(rec *records.Record, owner records.Owner, ns netns.Handle) []records.Owner {
	var others []records.Owner
	dead, away := 0, 0
	fenced := func() bool { return h.fencePresent(rec, ns) }
	for _, o := range rec.Owners {
		switch {
		case o.Is(owner.ID, owner.Bundle):
		case o.Alive(rec.Netns):
			others = append(others, o)
		case o.Remains() && fenced():
			others = append(others, o)
			away++
		default:
			dead++
		}
	}
	if dead > 0 {
		h.Log.WithField("owners", dead).Info("dropped owners whose process is gone without a poststop")
	}
	if away > 0 {
		h.Log.WithField("owners", away).Warn("kept owners whose first process runs in another network namespace now, or whose cgroup still holds processes: their workers may still run in this one")
	}
	return others
}

// fencePresent reports whether the namespace holds a fence of rec's
// backend, whole or not; true where it cannot be read, which keeps owners.
func (h *Hook) fencePresent(rec *records.Record, ns netns.Handle) bool {
	b, err := h.backend(rec.Backend)
	if err != nil {
		return true
	}
	seen, err := b.Inspect(ns)
	return err != nil || seen.Present
}

// makeWhole checks the fence rec describes against the rules in ns. A fence
// changed since its install (a rule put in front of it, a rule changed or
// gone), or one a hook that died left incomplete, is not joined as it is:
// it is put in again, whole, atomically, and rec takes what the new install
// made (the caller saves it).
func (h *Hook) makeWhole(store *records.Store, ns netns.Handle, rec *records.Record, p config.Policy) error {
	backend, err := h.backend(rec.Backend)
	if err != nil {
		return err
	}
	seen, err := backend.Inspect(ns)
	if err != nil {
		return err
	}
	whole, why := seen.Whole(rec.RulesDigest)
	switch {
	case whole && rec.Incomplete == "":
		return nil
	case rec.Incomplete != "":
		h.Log.WithField("incomplete", rec.Incomplete).Warn("a hook died while it changed the fence of this namespace; installing it whole")
	case seen.Present:
		h.Log.WithField("problem", why).Warn("the fence in this namespace is not whole (" + why + "); installing it whole again")
	default:
		h.Log.Warn("the record says this namespace is fenced but the rules are gone; installing them again")
	}
	if rec.Incomplete == "" { // else the record says so already
		if err := store.SaveIntent(rec, records.IncompleteInstall); err != nil {
			return err
		}
	}
	rs, feat, sums, err := h.install(backend, ns, p, rec.LogID)
	if err != nil {
		return err
	}
	rec.Features, rec.RuleNames, rec.RulesDigest = feat, ruleNames(rs), sums
	return nil
}

// install activates the fence. On a kernel that lacks conntrack or a log
// target it falls back to fewer optional features, since the refusals must
// not depend on them; any other error fails the install as it is.
//
// It returns the digests of the rules as the kernel holds them after the
// install, which later tell whether the fence is still whole; nil when they
// could not be read (the fence then counts as not whole and the next join
// puts it in again).
func (h *Hook) install(b backend.Backend, ns netns.Handle, p config.Policy, logID string) (rules.RuleSet, rules.Features, map[rules.Family]string, error) {
	var firstErr error
	for _, feat := range []rules.Features{rules.AllFeatures, {Conntrack: true}, {Log: true}, {}} {
		if !feat.Log && (p.Log.Required || p.Mode == config.ModeAudit) {
			continue // required logging; and audit mode without logging does nothing
		}
		rs := rules.NewRuleSet(p, logID, feat)
		err := b.Install(ns, rs)
		if err == nil {
			if !feat.Log {
				h.Log.WithError(firstErr).Warn("the kernel lacks the LOG/NFLOG target or the limit match: the fence refuses but does not log (set log.required: true to fail instead)")
			}
			if !feat.Conntrack {
				h.Log.WithError(firstErr).Warn("the kernel lacks the conntrack match: only new TCP connections are refused; UDP and other protocols pass")
			}
			sums, err := backend.ReadBack(b, ns)
			if err != nil {
				h.Log.WithError(err).Warn("reading the fence back after its install; it cannot be checked for changes until the next container of this namespace installs it again")
			}
			return rs, feat, sums, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if !errors.Is(err, backend.ErrMissingFeature) {
			break
		}
	}
	return nil, rules.Features{}, nil, firstErr
}

func (h *Hook) warnLogSysctl(p config.Policy) {
	if p.Log.Target != config.LogKernel {
		return
	}
	if backend.KernelLogHidesNamespaces() {
		h.Log.Warn("net.netfilter.nf_log_all_netns is 0 on the host: the kernel drops LOG lines of container namespaces; set it to 1 (sysctl -w net.netfilter.nf_log_all_netns=1) or use log.target: nflog")
	}
}

// Poststop removes the container from its namespace's owners and, with the
// last owner, takes the fence out if the namespace still exists.
func (h *Hook) Poststop(st *specs.State) (Result, error) {
	res := Result{Stage: oci.StagePoststop}
	store, err := records.Open(h.Cfg.StateDir)
	if err != nil {
		return res, err
	}
	rec, unlock, err := store.LockOwned(st.ID, st.Bundle, h.deadline())
	if err != nil {
		return res, err
	}
	if rec == nil {
		// No record names this id with this bundle: never fenced (not
		// selected, or another runtime's container of the same id), or
		// already removed by an earlier poststop or a prune; or a create
		// killed before its record named it, whose index entry goes now.
		// A record the index names for it that cannot be read must not
		// pass in silence.
		if bad := store.UnreadableFor(st.ID, st.Bundle); len(bad) > 0 {
			return res, fmt.Errorf("no readable record is owned by this container, and %d record(s) cannot be read (%s): one may be its own, whose fence then stays in place; look at them (bypass-hook status), and remove the fence by hand if it is this container's", len(bad), strings.Join(bad, ", "))
		}
		store.Forget(st.ID, st.Bundle)
		res.Action = "nothing to do: no record owned by this container (id and bundle)"
		return res, nil
	}
	defer unlock()
	res.Netns, res.Mode, res.Backend = rec.Netns.String(), rec.Policy.Mode, rec.Backend
	rec.RemoveOwner(st.ID, st.Bundle)
	if len(rec.Owners) > 0 {
		res.Action = fmt.Sprintf("left the fence; %d owner(s) remain", len(rec.Owners))
		return res, store.Save(rec)
	}

	hints := rec.Paths
	if b, err := oci.ReadBundle(st.Bundle); err == nil {
		hints = append(hints, b.NetnsPath)
	}
	res.Action, err = h.takeDown(store, rec, hints)
	return res, err
}

// takeDown removes the fence of rec, which no container owns any more, if
// its namespace still exists, and deletes the record. hints are paths that
// may reach the namespace; the caller holds the record's lock.
func (h *Hook) takeDown(store *records.Store, rec *records.Record, hints []string) (action string, err error) {
	// By a path only, never the file handle: a namespace that only the
	// handle reaches is held by a socket or a thread that no container of
	// the record accounts for (a pid 1 that moved away, a socket passed on),
	// which would send unfenced once the rules went. Its rules stay and go
	// with it; the record goes.
	ns, closeNs, found := netns.OpenKnown(rec.Netns, "", hints)
	if !found {
		return "namespace gone; record removed", store.Drop(rec)
	}
	defer closeNs()
	// The kernel gives a freed namespace's inode number to a new one: a
	// path found by number may reach another container's namespace (a
	// fence of another state directory), whose rules must stay. The file
	// handle names the namespace the record was made for and no other.
	if netns.Recycled(ns, rec.NsHandle) {
		return "namespace gone (its number is another namespace's now); record removed", store.Drop(rec)
	}
	if err := netns.NotHost(ns.ID); err != nil {
		return "", fmt.Errorf("the record of container %s names the host's network namespace; leaving it alone: %w", rec.LogID, err)
	}
	backend, err := h.backend(rec.Backend)
	if err != nil {
		return "", err
	}
	h.logSummary(backend, ns, rec)
	if err := backend.Remove(ns); err != nil {
		return "", fmt.Errorf("removing the fence from network namespace %s: %w", rec.Netns, err)
	}
	return "fence removed", store.Drop(rec)
}

// logSummary writes the last counters of the fence into the hook log.
func (h *Hook) logSummary(b backend.Backend, ns netns.Handle, rec *records.Record) {
	counters, err := b.Counters(ns)
	if err != nil {
		h.Log.WithError(err).Warn("reading the fence's counters")
		return
	}
	sums, t := rules.TallyCounters(rec.RuleNames, counters)
	fields := logrus.Fields{"log_id": rec.LogID, "refused_tcp": t.RefusedTCP, "refused_udp": t.RefusedUDP,
		"refused_other": t.RefusedOther, "logged": t.Logged}
	if rec.Policy.Mode == config.ModeAudit {
		fields["audited_tcp"], fields["audited_udp"], fields["audited_other"] = t.AuditedTCP, t.AuditedUDP, t.AuditedOther
	}
	for name, n := range sums {
		fields["packets_"+name] = n
	}
	msg := "fence summary: attempts refused and logged over the fence's life"
	if rec.Policy.Mode == config.ModeAudit {
		msg = "fence summary: attempts audited (let through) and logged over the fence's life"
	}
	h.Log.WithFields(fields).Info(msg)
}

func ruleNames(rs rules.RuleSet) map[rules.Family][]string {
	out := map[rules.Family][]string{}
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
	return fmt.Sprintf("mode %s, proxies %s, %d allow entries, dns %v, allowUids %v, otherProtocols %s, log %s; digest %s",
		p.Mode, strings.Join(proxies, ","), len(p.Allow), p.DNS, p.AllowUids, p.OtherProtocols, p.Log.Target, p.Digest())
}

func compact(paths ...string) []string {
	return slices.DeleteFunc(paths, func(s string) bool { return s == "" })
}

// ExitCode maps a stage's error to the hook's exit code: 0 done (or, under
// failure: open, could not fence), 1 could not fence or refused, 2 usage,
// input or config error.
func ExitCode(err error, failure string) int {
	var cfgErr *config.Error
	var annErr *config.AnnotationError
	var inErr *oci.InputError
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
