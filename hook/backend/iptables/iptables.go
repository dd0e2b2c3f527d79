// SPDX-License-Identifier: Apache-2.0

// Package iptables is the iptables backend: the fence is a chain of our own
// (BYPASS-HOOK) in each family's filter table, which OUTPUT jumps to first,
// written with the host's tools, one iptables-restore batch per family, run
// in the container's namespace. Where the tools are the nf_tables variant,
// the fence is read and removed over netlink (nft.go); legacy iptables is
// read with iptables-save. rules.go renders each rule of the model as
// iptables arguments. Batches go through iptables-restore, which
// go-iptables does not drive; go-iptables runs the one-rule commands of the
// rare path (a removal whose batch failed) and the perrule bench build.
package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/backend/fence"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Chain is the chain of our own that OUTPUT jumps to first.
const Chain = "BYPASS-HOOK"

// LockBudget is how long one hook run's iptables tools may wait for the
// xtables lock in all. The lock is per host (legacy iptables; the nf_tables
// variant takes none): a burst of container starts queues on it, but a
// holder that never lets go must fail the hook with a clear error before
// the runtime's hook timeout (10 s as bypass-hook registers itself) kills
// it half way.
const LockBudget = 6 * time.Second

// binDirs are searched for the iptables tools: runtimes run hooks with an
// empty PATH, and the container's root filesystem must never be used.
var binDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"}

// Iptables is the iptables backend: one iptables-restore batch per family,
// through the host's binaries, run inside the container's namespace.
type Iptables struct {
	Dir string // where iptables, ip6tables and their -restore and -save tools are
	// Wait fixes each tool's wait for the xtables lock, in seconds; 0 means
	// what is left of LockBudget since NewIptables.
	Wait     int
	deadline time.Time

	// Execs counts the tools run, so tests can hold the create path to one
	// batch per family.
	Execs int

	ipts map[rules.Family]*goipt.IPTables // go-iptables, made once: each New runs `iptables --version`

	// read is what Counters last read from nf_tables, which the next
	// Remove acts on when it is of the same namespace and no Install came
	// between: poststop reads the counters and removes right after, under
	// the record's lock, and need not read twice. A backend value lives for
	// one hook stage.
	read *xtRead
}

// xtRead is both families' filter tables in nf_tables of one namespace.
type xtRead struct {
	path   string
	tables map[rules.Family]filterTable
	inNft  bool // the kernel has nf_tables
}

// readFences reads the fences of the namespace at path, or takes what
// Counters read there.
func (b *Iptables) readFences(path string) (xtRead, error) {
	if r := b.read; r != nil && r.path == path {
		b.read = nil
		return *r, nil
	}
	tables, inNft, err := readFilters(path)
	return xtRead{path, tables, inNft}, err
}

// New finds the host's iptables tools.
func New() (*Iptables, error) {
	dir, err := findIptables()
	if err != nil {
		return nil, err
	}
	return &Iptables{Dir: dir, deadline: time.Now().Add(LockBudget)}, nil
}

func findIptables() (string, error) {
	for _, dir := range binDirs {
		ok := true
		for _, tool := range []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"} {
			if fi, err := os.Stat(filepath.Join(dir, tool)); err != nil || fi.Mode()&0o111 == 0 {
				ok = false
				break
			}
		}
		if ok {
			return dir, nil
		}
	}
	return "", fmt.Errorf("iptables, ip6tables and their -restore and -save tools are not all in %s: install the iptables package, or set backend: nftables",
		strings.Join(binDirs, ", "))
}

func (b *Iptables) Name() string { return config.BackendIptables }

// tool is the path of iptables (suffix "") or iptables-restore or
// iptables-save (suffix "-restore", "-save") for a family.
func (b *Iptables) tool(fam rules.Family, suffix string) string {
	name := "iptables"
	if fam == rules.IPv6 {
		name = "ip6tables"
	}
	return filepath.Join(b.Dir, name+suffix)
}

// SetDeadline ends the tools' waits for the xtables lock at t, if that
// comes before LockBudget does: a hook stage has one deadline for all its
// waits.
func (b *Iptables) SetDeadline(t time.Time) {
	if t.Before(b.deadline) {
		b.deadline = t
	}
}

// wait is the --wait, in whole seconds, for the next tool: what is left of
// the budget, and at least one.
func (b *Iptables) wait() int {
	if b.Wait > 0 {
		return b.Wait
	}
	left := time.Until(b.deadline)
	return max(1, int((left+time.Second-1)/time.Second))
}

// ipt returns go-iptables for one family, made on first use: New runs
// `iptables --version`, whose answer does not depend on the namespace. Only
// the rare paths use it; the usual ones run the tools themselves.
func (b *Iptables) ipt(fam rules.Family) (*goipt.IPTables, error) {
	if ipt := b.ipts[fam]; ipt != nil {
		return ipt, nil
	}
	proto := goipt.ProtocolIPv4
	if fam == rules.IPv6 {
		proto = goipt.ProtocolIPv6
	}
	ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(b.tool(fam, "")), goipt.Timeout(b.wait()))
	if err != nil {
		return nil, err
	}
	if b.ipts == nil {
		b.ipts = map[rules.Family]*goipt.IPTables{}
	}
	b.ipts[fam] = ipt
	return ipt, nil
}

// Install applies each family in one iptables-restore batch. The batch for a
// fresh namespace creates the chain with -N, so it fails when a fence is
// already there; only then do we look at what is there and replace it.
func (b *Iptables) Install(ns netns.Handle, rs rules.RuleSet) error {
	b.read = nil
	return netns.In(ns.Path, func() error {
		var undo []func() error
		rollback := func(cause error) error {
			for i := len(undo) - 1; i >= 0; i-- {
				if err := undo[i](); err != nil {
					return errors.Join(cause, fmt.Errorf("rolling back: %w", err))
				}
			}
			return cause
		}
		// The fresh batches of both families run at once: each tool is a
		// process of its own that spends most of its time starting, and a
		// container's start waits for the slower one only.
		waits := map[rules.Family]func() error{}
		for _, fam := range rules.Families {
			waits[fam] = b.startRestore(fam, installBatch(ruleLines(fam, rs[fam]), false, false))
		}
		fresh := map[rules.Family]error{}
		for _, fam := range rules.Families {
			if fresh[fam] = waits[fam](); fresh[fam] == nil {
				undo = append(undo, func() error {
					if err := b.restore(fam, removeBatch(true)); err != nil {
						return err
					}
					return dropEmptyFilterTables(ns.Path)
				})
			}
		}
		for _, fam := range rules.Families {
			err := fresh[fam]
			if err == nil {
				continue
			}
			if errors.Is(err, fence.ErrLockTimeout) {
				return rollback(err)
			}
			old, jump, lerr := b.current(fam)
			if lerr != nil || old == nil {
				return rollback(err)
			}
			if err := b.restore(fam, installBatch(ruleLines(fam, rs[fam]), true, jump)); err != nil {
				return rollback(err)
			}
			undo = append(undo, func() error { return b.restore(fam, installBatch(old, true, true)) })
		}
		return nil
	})
}

// current returns the rule lines of our chain (nil if it does not exist)
// and whether OUTPUT jumps to it.
func (b *Iptables) current(fam rules.Family) (lines []string, jump bool, err error) {
	st, err := b.save(fam)
	if err != nil || !st.exists {
		return nil, false, err
	}
	return st.lines, st.jump, nil
}

func ruleLines(fam rules.Family, rules []rules.Rule) []string {
	lines := make([]string, len(rules))
	for i, r := range rules {
		lines[i] = "-A " + Chain + " " + joinArgs(Args(r, fam))
	}
	return lines
}

// installBatch renders an iptables-restore input that fills our chain with
// lines and puts the jump first in OUTPUT. Fresh, it creates the chain with
// -N, which fails if a fence is there already. Replacing, it flushes the
// chain and moves the jump (dropping the old one if there was one).
func installBatch(lines []string, replace, hadJump bool) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	if replace {
		fmt.Fprintf(&b, ":%s - [0:0]\n-F %s\n", Chain, Chain)
		if hadJump {
			fmt.Fprintf(&b, "-D OUTPUT -j %s\n", Chain)
		}
	} else {
		fmt.Fprintf(&b, "-N %s\n", Chain)
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "-I OUTPUT 1 -j %s\nCOMMIT\n", Chain)
	return b.String()
}

func removeBatch(jump bool) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	if jump {
		fmt.Fprintf(&b, "-D OUTPUT -j %s\n", Chain)
	}
	fmt.Fprintf(&b, "-F %s\n-X %s\nCOMMIT\n", Chain, Chain)
	return b.String()
}

func joinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t\"") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// restore runs one iptables-restore batch; --wait bounds the wait for the
// xtables lock.
func (b *Iptables) restore(fam rules.Family, input string) error {
	return b.startRestore(fam, input)()
}

// startRestore starts one iptables-restore batch; wait waits for it and
// says what went wrong.
func (b *Iptables) startRestore(fam rules.Family, input string) (wait func() error) {
	tool := b.tool(fam, "-restore")
	cmd := exec.Command(tool, "--noflush", "--wait", strconv.Itoa(b.wait()))
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	b.Execs++
	err := cmd.Start()
	return func() error {
		if err == nil {
			err = cmd.Wait()
		}
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(out.String())
		if strings.Contains(msg, "xtables lock") {
			return fmt.Errorf("%s: %w: gave up after %d s; another iptables user holds it (/run/xtables.lock unless XTABLES_LOCKFILE says otherwise; `fuser -v /run/xtables.lock` shows who): %s",
				filepath.Base(tool), fence.ErrLockTimeout, b.wait(), msg)
		}
		if missingFeature(msg) {
			return fmt.Errorf("%s: %w: %s", filepath.Base(tool), fence.ErrMissingFeature, msg)
		}
		return fmt.Errorf("%s: %v: %s", filepath.Base(tool), err, msg)
	}
}

// missingFeature tells, from what iptables-restore says, whether a match or
// target is missing from the kernel (legacy: its module; nf_tables: the
// expression), rather than the batch being wrong.
func missingFeature(msg string) bool {
	for _, s := range []string{"Couldn't load match", "Couldn't load target", "Couldn't find target",
		"No chain/target/match by that name", "No such file or directory", "not supported"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// saved is what iptables-save shows of the fence in one family.
type saved struct {
	exists  bool     // our chain is declared
	jump    bool     // OUTPUT jumps to it
	lines   []string // its rules, "-A BYPASS-HOOK ...", in order
	packets []uint64 // each rule's packet counter
	first   string   // OUTPUT's first rule, "-A OUTPUT ..."; "" when it has none
}

// save reads the filter table with counters: one exec, and iptables-save
// needs no lock.
func (b *Iptables) save(fam rules.Family) (saved, error) {
	tool := b.tool(fam, "-save")
	cmd := exec.Command(tool, "-c", "-t", "filter")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	b.Execs++
	if err := cmd.Run(); err != nil {
		return saved{}, fmt.Errorf("%s: %v: %s", filepath.Base(tool), err, strings.TrimSpace(errb.String()))
	}
	return parseSave(out.String())
}

// parseSave picks our chain out of `iptables-save -c -t filter`, whose rule
// lines start with their counters: "[packets:bytes] -A CHAIN ...".
func parseSave(out string) (saved, error) {
	var st saved
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, ":"+Chain+" ") {
			st.exists = true
			continue
		}
		counters, rule, ok := strings.Cut(line, "] ")
		if !ok || !strings.HasPrefix(counters, "[") {
			continue
		}
		if st.first == "" && strings.HasPrefix(rule, "-A OUTPUT ") {
			st.first = rule
		}
		switch {
		case rule == "-A OUTPUT -j "+Chain:
			st.jump = true
		case strings.HasPrefix(rule, "-A "+Chain+" "):
			pkts, _, _ := strings.Cut(counters[1:], ":")
			n, err := strconv.ParseUint(pkts, 10, 64)
			if err != nil {
				return saved{}, fmt.Errorf("iptables-save: bad counters in %q", line)
			}
			st.lines = append(st.lines, rule)
			st.packets = append(st.packets, n)
		}
	}
	return st, nil
}

// Inspect reads the fence of each family: over netlink where the nf_tables
// variant of iptables holds it (readFilter), with no tool run; with
// iptables-save where legacy iptables does.
func (b *Iptables) Inspect(ns netns.Handle) (fence.Seen, error) {
	tables, inNft, err := readFilters(ns.Path)
	if err != nil {
		return fence.Seen{}, err
	}
	seen := fence.Seen{Present: true, Rules: map[rules.Family]string{}}
	var problems []string
	rest := notInNftables(tables, inNft, func(fam rules.Family, t filterTable) {
		jump, p, sum := t.seen(fam)
		seen.Present = seen.Present && jump
		problems = append(problems, p...)
		seen.Rules[fam] = sum
	})
	if len(rest) > 0 {
		err = netns.In(ns.Path, func() error {
			for _, fam := range rest {
				if inNft && !hasLegacyTable(fam) {
					seen.Present = false // neither nf_tables nor x_tables has it
					seen.Rules[fam] = fence.Digest(nil)
					continue
				}
				st, err := b.save(fam)
				if err != nil {
					return err
				}
				seen.Present = seen.Present && st.exists && st.jump
				if st.jump && st.first != "-A OUTPUT -j "+Chain {
					problems = append(problems, fmt.Sprintf("%s: OUTPUT's first rule is %q, not the jump to %s", fam, st.first, Chain))
				}
				seen.Rules[fam] = fence.Digest(st.lines)
			}
			return nil
		})
	}
	seen.Problem = strings.Join(problems, "; ")
	return seen, err
}

// Installed reports whether the fence is there, whole or not.
func (b *Iptables) Installed(ns netns.Handle) (bool, error) {
	seen, err := b.Inspect(ns)
	return seen.Present, err
}

// notInNftables calls found with each family's fence that nf_tables holds
// and returns the other families: those only the tools can see (legacy
// iptables, or no fence at all).
func notInNftables(tables map[rules.Family]filterTable, inNft bool, found func(rules.Family, filterTable)) []rules.Family {
	var rest []rules.Family
	for _, fam := range rules.Families {
		if t := tables[fam]; inNft && t.hasFence() {
			found(fam, t)
			continue
		}
		rest = append(rest, fam)
	}
	return rest
}

// Remove is tolerant of a fence that is partly or wholly gone already.
// Where the nf_tables variant of iptables made it, one netlink transaction
// takes out both families (and the filter tables, when nothing else is in
// them); legacy iptables takes one batch per family.
func (b *Iptables) Remove(ns netns.Handle) error {
	r, err := b.readFences(ns.Path)
	if err != nil {
		return err
	}
	tables, inNft := r.tables, r.inNft
	rest := notInNftables(tables, inNft, func(rules.Family, filterTable) {})
	if err := removeFences(ns.Path, tables); err != nil {
		return err
	}
	if len(rest) == 0 {
		return nil
	}
	return netns.In(ns.Path, func() error {
		var errs []error
		for _, fam := range rest {
			if inNft && !hasLegacyTable(fam) {
				continue // neither nf_tables nor x_tables has it: gone already
			}
			if b.restore(fam, removeBatch(true)) == nil {
				continue
			}
			ipt, err := b.ipt(fam)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for {
				ok, err := ipt.Exists("filter", "OUTPUT", "-j", Chain)
				if err != nil || !ok {
					break
				}
				if err := ipt.Delete("filter", "OUTPUT", "-j", Chain); err != nil {
					errs = append(errs, err)
					break
				}
			}
			if err := ipt.ClearAndDeleteChain("filter", Chain); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", fam, err))
			}
		}
		return errors.Join(errs...)
	})
}

// Counters reads each rule's packet counter: over netlink where the
// nf_tables variant of iptables made the fence, else from iptables-save.
func (b *Iptables) Counters(ns netns.Handle) (map[rules.Family][]uint64, error) {
	tables, inNft, err := readFilters(ns.Path)
	if err != nil {
		return nil, err
	}
	b.read = &xtRead{ns.Path, tables, inNft}
	out := map[rules.Family][]uint64{}
	rest := notInNftables(tables, inNft, func(fam rules.Family, t filterTable) { out[fam] = t.packets() })
	if len(rest) == 0 {
		return out, nil
	}
	err = netns.In(ns.Path, func() error {
		for _, fam := range rest {
			st, err := b.save(fam)
			if err != nil {
				return err
			}
			if !st.exists {
				return fmt.Errorf("%s: chain %s does not exist", fam, Chain)
			}
			out[fam] = st.packets
		}
		return nil
	})
	return out, err
}
