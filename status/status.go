// SPDX-License-Identifier: Apache-2.0

// Package status reports, for the operator, what the records say is fenced
// and what each fence's counters show; it reads the record store and asks
// the backends, and holds no state of its own.
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// FenceStatus is what status reports of one fenced network namespace.
type FenceStatus struct {
	// Container is the id in the log prefix: the namespace's first owner.
	Container string           `json:"container"`
	Owners    []OwnerStatus    `json:"owners"`
	Netns     string           `json:"netns"`
	NetnsPath string           `json:"netnsPath,omitempty"`
	Mode      string           `json:"mode"`
	Backend   string           `json:"backend"`
	Log       config.LogPolicy `json:"log"`
	Features  rules.Features   `json:"features"`
	Installed time.Time        `json:"installed"`
	// Incomplete says what a hook was doing to the fence when it died (see
	// records.Record.Incomplete); empty for a complete record.
	Incomplete string       `json:"incomplete,omitempty"`
	Rules      []RuleStatus `json:"rules"`
	// Whole says whether the fence is as it was installed (backend.Seen);
	// nil when it could not be read. NotWhole says what is wrong.
	Whole    *bool  `json:"whole,omitempty"`
	NotWhole string `json:"notWhole,omitempty"`
	// Totals is nil when the counters could not be read (see Error).
	Totals *rules.Tally `json:"totals,omitempty"`
	Error  string       `json:"error,omitempty"`
	// Recent are the last attempts the monitor saw in the namespace, with
	// their process (see recent.go); nil when no monitor was asked or none
	// answered.
	Recent []Attempt `json:"recentAttempts,omitzero"`
}

// OwnerStatus is one owner of a fence, and whether its process is gone
// (stale): a fence whose owners are all stale is left only to them, and
// `prune` or the monitor takes it out after a grace period.
type OwnerStatus struct {
	records.Owner
	Stale       bool   `json:"stale"`
	StaleReason string `json:"staleReason,omitempty"`
}

// RuleStatus is one installed rule and its packet counter.
type RuleStatus struct {
	Family string `json:"family"`
	Name   string `json:"name"`
	// Rule is the rule as this build renders it; empty when the record was
	// written by a build whose rules differ.
	Rule    string  `json:"rule,omitempty"`
	Packets *uint64 `json:"packets"` // nil when not read
}

// NewBackendFunc makes the backend a record names (backend.New in production).
type NewBackendFunc func(name string) (backend.Backend, error)

// Read reports the fences of the store: all of them when id is "", or
// the one that container id owns. id may be an owner's full id or a prefix
// of it (as short as the log prefix's 12 characters, or shorter while it
// names one container).
func Read(store *records.Store, id string, newBackend NewBackendFunc) ([]FenceStatus, error) {
	recs, err := store.All()
	if err != nil {
		return nil, fmt.Errorf("reading the state directory %s: %w", store.Dir, err)
	}
	if id != "" {
		found, err := findByIDOrName(recs, id)
		if err != nil {
			return nil, fmt.Errorf("%w (state directory %s)", err, store.Dir)
		}
		recs = found
	}
	slices.SortFunc(recs, func(a, b *records.Record) int { return a.Installed.Compare(b.Installed) })
	// One reader per core: most of a fence's reading is the kernel's dump
	// of its rules, which runs on the reader's core.
	out := make([]FenceStatus, len(recs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(recs)) {
		wg.Go(func() {
			for i := range next {
				out[i] = statusOf(recs[i], newBackend)
			}
		})
	}
	for i := range recs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, nil
}

// findByIDOrName finds the fences of a container id (or a unique prefix of
// one), else of a podman container or pod name: a pod's containers share
// one fence, which is reported once.
func findByIDOrName(recs []*records.Record, id string) ([]*records.Record, error) {
	rec, err := findRecord(recs, id)
	if err == nil {
		return []*records.Record{rec}, nil
	}
	ids, perr := podmanIDs(id)
	if perr != nil || len(ids) == 0 {
		return nil, err
	}
	var out []*records.Record
	for _, cid := range ids {
		if r, ferr := findRecord(recs, cid); ferr == nil && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("podman knows %q (%s) but no fence is recorded for it", id, strings.Join(ids, ", "))
	}
	return out, nil
}

// podmanIDs asks podman for the ids behind a container name, or the
// containers of a pod. Records know containers by id only: the OCI state
// a hook gets carries no name.
func podmanIDs(name string) ([]string, error) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, podman, "container", "inspect", "--format", "{{.Id}}", name).Output()
	if err != nil {
		out, err = exec.CommandContext(ctx, podman, "pod", "inspect", "--format", "{{range .Containers}}{{.Id}} {{end}}", name).Output()
	}
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// findRecord picks the record owned by id: an exact id first, then a
// unique prefix.
func findRecord(recs []*records.Record, id string) (*records.Record, error) {
	var byPrefix []*records.Record
	var names []string
	for _, r := range recs {
		if r.LogID == id || r.HasOwner(id) {
			return r, nil
		}
		for _, o := range r.Owners {
			if strings.HasPrefix(o.ID, id) {
				byPrefix = append(byPrefix, r)
				names = append(names, o.ID)
				break
			}
		}
	}
	switch len(byPrefix) {
	case 0:
		return nil, fmt.Errorf("no fenced container %q", id)
	case 1:
		return byPrefix[0], nil
	}
	return nil, fmt.Errorf("%q names more than one fenced container (%s): give more of the id", id, strings.Join(names, ", "))
}

// statusOf reports what rec says of its fence, and what the fence in the
// namespace shows now.
func statusOf(rec *records.Record, newBackend NewBackendFunc) FenceStatus {
	s := FenceStatus{
		Container:  rec.LogID,
		Netns:      rec.Netns.String(),
		Mode:       rec.Policy.Mode,
		Backend:    rec.Backend,
		Log:        rec.Policy.Log,
		Features:   rec.Features,
		Installed:  rec.Installed,
		Incomplete: rec.Incomplete,
	}
	for _, o := range rec.Owners {
		why := o.Stale(rec.Netns)
		s.Owners = append(s.Owners, OwnerStatus{Owner: o, Stale: why != "", StaleReason: why})
	}
	s.Rules = ruleStatuses(rec)
	inspect(&s, rec, newBackend)
	return s
}

// ruleStatuses lists the rules rec names, without counters. A rule's text
// is shown only when this build makes the same rules from rec's policy.
func ruleStatuses(rec *records.Record) []RuleStatus {
	var out []RuleStatus
	for _, fam := range rules.Families {
		names := rec.RuleNames[fam]
		rebuilt := rules.Rules(rec.Policy, rec.LogID, fam, rec.Features)
		same := len(rebuilt) == len(names)
		for i := 0; same && i < len(names); i++ {
			same = rebuilt[i].Name == names[i]
		}
		for i, name := range names {
			rs := RuleStatus{Family: fam.String(), Name: name}
			if same {
				rs.Rule = ruleText(rebuilt[i], rec.Backend)
			}
			out = append(out, rs)
		}
	}
	return out
}

// inspect reads the fence in rec's namespace into s: whether it is whole,
// and its counters. What cannot be read is said in s.Error.
func inspect(s *FenceStatus, rec *records.Record, newBackend NewBackendFunc) {
	// Whether the fence is whole is read before the counters, which a
	// fence changed by other hands may not give.
	r, err := backend.Look(rec.Netns, rec.NsHandle, rec.Hints(), rec.Backend, rec.RulesDigest, newBackend)
	//lint:ignore SA5001 Look may hold the namespace's handle with an error too: closed either way.
	defer r.Close()
	switch {
	case errors.Is(err, backend.ErrNetnsGone):
		s.Error = "the network namespace is gone (its containers exited; poststop removes the record): no counters"
		return
	case err != nil && r.Backend == nil:
		s.NetnsPath = shownPath(r)
		s.Error = fmt.Sprintf("reading the counters: %v", err)
		return
	case err != nil:
		s.NetnsPath = shownPath(r)
		s.Error = fmt.Sprintf("reading the %s fence in %s: %v", rec.Backend, shownNetns(s), err)
		return
	}
	ns, b := r.NS, r.Backend
	s.NetnsPath = shownPath(r)
	s.Whole, s.NotWhole = &r.Whole, r.Why
	counters := r.Seen.Counters
	if counters == nil {
		counters, err = b.Counters(ns)
	}
	if err != nil {
		s.Error = fmt.Sprintf("reading the counters of the %s fence in %s: %v", rec.Backend, shownNetns(s), err)
		return
	}
	for _, fam := range rules.Families {
		if got, want := len(counters[fam]), len(rec.RuleNames[fam]); got != want {
			s.Error = fmt.Sprintf("the namespace has %d %s rules where the record has %d: the fence was changed by other hands; counters not shown", got, fam, want)
			return
		}
	}
	i := 0
	for _, fam := range rules.Families {
		for _, n := range counters[fam] {
			s.Rules[i].Packets = &n
			i++
		}
	}
	_, t := rules.TallyCounters(rec.RuleNames, counters)
	s.Totals = &t
}

// attempts are a fence's attempts by protocol: refused in enforce mode,
// let through (audited) in audit mode, whose fence refuses nothing.
func attempts(f FenceStatus) (verb string, tcp, udp, other uint64) {
	t := f.Totals
	if f.Mode == config.ModeAudit {
		return "audited", t.AuditedTCP, t.AuditedUDP, t.AuditedOther
	}
	return "refused", t.RefusedTCP, t.RefusedUDP, t.RefusedOther
}

// WriteSummary writes one line per fence. TCP, UDP and OTHER count the
// attempts, which ATTEMPTS says were refused or, in audit mode, audited
// (let through).
func WriteSummary(w io.Writer, fences []FenceStatus) error {
	if len(fences) == 0 {
		_, err := fmt.Fprintln(w, "no fenced containers")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tPOD\tNETNS\tMODE\tBACKEND\tLOG\tOWNERS\tWHOLE\tATTEMPTS\tTCP\tUDP\tOTHER\tLOGGED")
	for _, f := range fences {
		verb, tcp, udp, other, logged := "-", "-", "-", "-", "-"
		if f.Totals != nil {
			v, t, u, o := attempts(f)
			verb, tcp, udp, other, logged = v, num(t), num(u), num(o), num(f.Totals.Logged)
		}
		whole := "-"
		if f.Whole != nil {
			whole = map[bool]string{true: "yes", false: "NO"}[*f.Whole]
		}
		if f.Incomplete != "" {
			whole = "INCOMPLETE"
		}
		owners := strconv.Itoa(len(f.Owners))
		if n := stale(f); n > 0 {
			owners += fmt.Sprintf(" (%d stale)", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rules.ShortID(f.Container), podOf(f), f.Netns, f.Mode, f.Backend,
			logTarget(f), owners, whole, verb, tcp, udp, other, logged)
	}
	return tw.Flush()
}

// stale counts the owners of f whose process is gone.
func stale(f FenceStatus) int {
	n := 0
	for _, o := range f.Owners {
		if o.Stale {
			n++
		}
	}
	return n
}

// WriteDetails writes each fence with its rules and their counters.
func WriteDetails(w io.Writer, fences []FenceStatus) error {
	if len(fences) == 0 {
		_, err := fmt.Fprintln(w, "no fenced containers")
		return err
	}
	// One tabwriter for every table: its Flush ends a table and keeps its
	// buffers, which a new one for each table of a thousand fences made
	// again.
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, f := range fences {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := writeFence(tw, f); err != nil {
			return err
		}
		if err := writeRules(tw, f); err != nil {
			return err
		}
		if err := writeRecent(w, f); err != nil {
			return err
		}
	}
	return nil
}

// shownNetns names the fence's namespace in an error: the path status
// shows, else (reached by its file handle) the namespace itself.
func shownNetns(s *FenceStatus) string {
	if s.NetnsPath != "" {
		return s.NetnsPath
	}
	return s.Netns
}

// shownPath is the path status names for the namespace: none when only
// its file handle reached it (a /proc/self/fd path means nothing once
// status exits).
func shownPath(r backend.Reading) string {
	if r.ByHandle {
		return ""
	}
	return r.NS.Path
}

// writeFence writes what status knows of one fence, a line a key, through
// tw, and flushes it.
func writeFence(tw *tabwriter.Writer, f FenceStatus) error {
	fmt.Fprintf(tw, "container\t%s\n", f.Container)
	where := f.Netns
	if f.NetnsPath != "" {
		where += " via " + f.NetnsPath
	}
	fmt.Fprintf(tw, "netns\t%s\n", where)
	fmt.Fprintf(tw, "mode\t%s\n", f.Mode)
	fmt.Fprintf(tw, "backend\t%s\n", f.Backend)
	fmt.Fprintf(tw, "log\t%s\n", logDescription(f))
	for j, o := range f.Owners {
		label := ""
		if j == 0 {
			label = "owners"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, ownerText(o))
	}
	fmt.Fprintf(tw, "installed\t%s\n", f.Installed.UTC().Format(time.RFC3339))
	if f.Incomplete != "" {
		fmt.Fprintf(tw, "incomplete\t%s\n", IncompleteText(f.Incomplete))
	}
	if f.Whole != nil {
		fmt.Fprintf(tw, "whole\t%s\n", wholeText(f))
	}
	if f.Totals != nil {
		verb, t, u, o := attempts(f)
		fmt.Fprintf(tw, "%s\ttcp %d, udp %d, other %d\n", verb, t, u, o)
		fmt.Fprintf(tw, "logged\t%d (at most %s, burst %d, per log rule)\n", f.Totals.Logged, f.Log.Rate, f.Log.Burst)
	}
	if f.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", f.Error)
	}
	return tw.Flush()
}

// ownerText is one owner's line: a stale owner says why, and what clears it.
func ownerText(o OwnerStatus) string {
	stale := ""
	if o.Stale {
		stale = "; STALE: " + o.StaleReason + " (bypass-hook prune removes a fence left only to stale owners once nothing runs in its namespace and their processes are gone)"
	}
	pod := ""
	if !o.Identity.IsZero() {
		pod = o.Identity.Name(o.ID) + " "
	}
	return fmt.Sprintf("%s%s (pid %d, since %s%s)", pod, o.ID, o.Pid, o.Since.UTC().Format(time.RFC3339), stale)
}

// writeRules writes the table of a fence's rules, numbered within each
// family, through tw, and flushes it.
func writeRules(tw *tabwriter.Writer, f FenceStatus) error {
	fmt.Fprintln(tw, "  FAMILY\t#\tPACKETS\tRULE")
	n := 0
	last := ""
	for _, r := range f.Rules {
		if r.Family != last {
			n, last = 0, r.Family
		}
		n++
		packets := "-"
		if r.Packets != nil {
			packets = num(*r.Packets)
		}
		rule := r.Rule
		if rule == "" {
			rule = r.Name + ": (written by another build of the hook)"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\n", r.Family, n, packets, rule)
	}
	return tw.Flush()
}

// IncompleteText says what an incomplete record means and what resolves it.
func IncompleteText(what string) string {
	return "YES: a hook was killed while it changed the fence (" + what + "), so the rules may be anything between before and after; " +
		"the next container to start in the namespace installs it whole, and `bypass-hook prune` or the monitor completes it (an owner still runs) or takes it out (none does)"
}

func wholeText(f FenceStatus) string {
	if *f.Whole {
		return "yes: the rules are as installed, and nothing is in front of them"
	}
	return "NO: " + f.NotWhole + "; the next container to start in the namespace puts the fence back (or remove and create the container)"
}

func logTarget(f FenceStatus) string {
	if !f.Features.Log {
		return "none"
	}
	return f.Log.Target
}

func logDescription(f FenceStatus) string {
	if !f.Features.Log {
		return "none: the kernel has no log target, so the fence refuses without logging"
	}
	d := f.Log.Target
	if f.Log.Target == config.LogNflog {
		d += fmt.Sprintf(" group %d", f.Log.Group)
	}
	return d + fmt.Sprintf(", prefix %q, rate %s, burst %d", rules.LogPrefix(f.Log.Prefix, f.Container), f.Log.Rate, f.Log.Burst)
}

func num(n uint64) string { return fmt.Sprintf("%d", n) }

// Filter keeps the fences that a container of the pod owns: of namespace
// (any when "") and pod (any when "").
func Filter(fences []FenceStatus, namespace, pod string) []FenceStatus {
	if namespace == "" && pod == "" {
		return fences
	}
	var out []FenceStatus
	for _, f := range fences {
		if slices.ContainsFunc(f.Owners, func(o OwnerStatus) bool {
			return (namespace == "" || o.Namespace == namespace) && (pod == "" || o.Pod == pod)
		}) {
			out = append(out, f)
		}
	}
	return out
}

// podOf names the pod of a fence's owners, "-" outside Kubernetes.
func podOf(f FenceStatus) string {
	for _, o := range f.Owners {
		if o.Pod != "" {
			return o.Namespace + "/" + o.Pod
		}
	}
	return "-"
}

// WriteUnfenced lists the selected containers that run without a fence, as
// the NRI plugin last saw them.
func WriteUnfenced(w io.Writer, list []records.Unfenced) error {
	if len(list) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nNOT FENCED: %d selected container(s) run WITHOUT the fence (they started while the NRI plugin was away, and it could not fence them):\n", len(list))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  CONTAINER\tNAME\tPID\tSEEN\tREASON")
	for _, u := range list {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", rules.ShortID(u.ID), u.Identity.Name("-"), u.Pid, u.Seen.UTC().Format(time.RFC3339), u.Reason)
	}
	return tw.Flush()
}

// ruleText is a rule as its backend installed it: the iptables backend
// lets what the fence accepts go on with RETURN, to whatever else the
// namespace's OUTPUT holds, and status says so rather than "accept".
func ruleText(r rules.Rule, backendName string) string {
	text := r.String()
	if backendName == config.BackendIptables && r.Action == rules.Accept {
		text = strings.TrimSuffix(text, " -> "+string(rules.Accept)) + " -> RETURN (passes on to the rest of OUTPUT)"
	}
	return text
}
