// SPDX-License-Identifier: Apache-2.0

package backend

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

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/coreos/go-iptables/iptables"

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

// Iptables is the iptables backend. A fresh fence on iptables-nft 1.8.9 is
// written over netlink as its tools would write it (iptables_nftnl.go);
// otherwise it is one iptables-restore batch per family, through the host's
// binaries, run inside the container's namespace.
type Iptables struct {
	Dir string // where iptables, ip6tables and their -restore and -save tools are
	// Wait fixes each tool's wait for the xtables lock, in seconds; 0 means
	// what is left of LockBudget since NewIptables.
	Wait     int
	deadline time.Time

	// Execs counts the tools run, so tests can hold the create path to one
	// batch per family.
	Execs int

	ipts map[rules.Family]*iptables.IPTables // go-iptables, made once: each New runs `iptables --version`

	// read is what Counters last read from nf_tables, which the next
	// Remove acts on when it is of the same namespace and no Install came
	// between: poststop reads the counters and removes right after, under
	// the record's lock, and need not read twice. A backend value lives for
	// one hook stage.
	read *xtRead
}

// xtRead is both families' fences in nf_tables of one namespace.
type xtRead struct {
	path   string
	fences map[rules.Family]xtFence
	inNft  bool // the kernel has nf_tables
}

// readFences reads the fences of the namespace at path, or takes what
// Counters read there.
func (b *Iptables) readFences(path string) (xtRead, error) {
	if r := b.read; r != nil && r.path == path {
		b.read = nil
		return *r, nil
	}
	fences, inNft, err := readXtFences(path)
	return xtRead{path, fences, inNft}, err
}

// NewIptables finds the host's iptables tools.
func NewIptables() (*Iptables, error) {
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
func (b *Iptables) ipt(fam rules.Family) (*iptables.IPTables, error) {
	if ipt := b.ipts[fam]; ipt != nil {
		return ipt, nil
	}
	proto := iptables.ProtocolIPv4
	if fam == rules.IPv6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(b.tool(fam, "")), iptables.Timeout(b.wait()))
	if err != nil {
		return nil, err
	}
	if b.ipts == nil {
		b.ipts = map[rules.Family]*iptables.IPTables{}
	}
	b.ipts[fam] = ipt
	return ipt, nil
}

// Install applies each family in one iptables-restore batch. The batch for a
// fresh namespace creates the chain with -N, so it fails when a fence is
// already there; only then do we look at what is there and replace it.
func (b *Iptables) Install(ns netns.Handle, rs rules.RuleSet) error {
	b.read = nil
	if done, err := b.installNftnl(ns, rs); done { // iptables_nftnl.go
		return err
	}
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
					return dropEmptyFilterTables(fam)
				})
			}
		}
		for _, fam := range rules.Families {
			err := fresh[fam]
			if err == nil {
				continue
			}
			if errors.Is(err, ErrLockTimeout) {
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
		lines[i] = "-A " + Chain + " " + joinArgs(IptablesArgs(r, fam))
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
				filepath.Base(tool), ErrLockTimeout, b.wait(), msg)
		}
		if missingFeature(msg) {
			return fmt.Errorf("%s: %w: %s", filepath.Base(tool), ErrMissingFeature, msg)
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
// variant of iptables holds it (raw dumps, see inspectXt), with no tool run;
// with iptables-save where legacy iptables does.
func (b *Iptables) Inspect(ns netns.Handle) (Seen, error) {
	seen := Seen{Present: true, Rules: map[rules.Family]string{}}
	var problems []string
	var restFams []rules.Family
	inNft := false
	s, err := openNfSock(ns.Path)
	if err == nil {
		defer s.close()
		inNft = true
	}
	for _, fam := range rules.Families {
		var xt xtSeen
		if inNft {
			xt, err = inspectXt(s, fam)
			if noNftables(err) {
				inNft, err = false, nil
			}
			if err != nil {
				return Seen{}, fmt.Errorf("reading the %s fence from nf_tables in %s: %w", fam, ns.Path, err)
			}
		}
		if !xt.found {
			restFams = append(restFams, fam)
			continue
		}
		seen.Present = seen.Present && xt.jump
		problems = append(problems, xt.problems...)
		seen.Rules[fam] = xt.sum
	}
	if len(restFams) > 0 {
		err = netns.In(ns.Path, func() error {
			for _, fam := range restFams {
				if inNft && !hasLegacyTable(fam) {
					seen.Present = false // neither nf_tables nor x_tables has it
					seen.Rules[fam] = digest(nil)
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
				seen.Rules[fam] = digest(st.lines)
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
func notInNftables(fences map[rules.Family]xtFence, inNft bool, found func(rules.Family, xtFence)) []rules.Family {
	var rest []rules.Family
	for _, fam := range rules.Families {
		if f := fences[fam]; inNft && f.chain != nil {
			found(fam, f)
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
	fences, inNft := r.fences, r.inNft
	rest := notInNftables(fences, inNft, func(rules.Family, xtFence) {})
	if err := removeXtFences(ns.Path, fences); err != nil {
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
	fences, inNft, err := readXtFences(ns.Path)
	if err != nil {
		return nil, err
	}
	b.read = &xtRead{ns.Path, fences, inNft}
	out := map[rules.Family][]uint64{}
	rest := notInNftables(fences, inNft, func(fam rules.Family, f xtFence) { out[fam] = f.packets() })
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

// IptablesArgs renders one rule as iptables arguments (after "-A CHAIN").
// Accepting rules RETURN rather than ACCEPT: a packet the fence lets pass
// still meets whatever else the namespace's OUTPUT holds.
func IptablesArgs(r rules.Rule, fam rules.Family) []string {
	var a []string
	if r.SourceRouted {
		if fam == rules.IPv6 {
			// rt matches a routing header of any type anywhere in the
			// chain of extension headers.
			a = append(a, "-m", "rt")
		} else {
			// IHL above 5: the header carries options. Mainline has no
			// match that finds LSRR or SSRR among other options; u32 reads
			// the header length.
			a = append(a, "-m", "u32", "--u32", "0>>24&0xF=6:15")
		}
	}
	if r.OutIface != "" {
		a = append(a, "-o", r.OutIface)
	}
	if r.Dst.IsValid() {
		a = append(a, "-d", r.Dst.String())
	}
	if r.Proto != rules.ProtoAny {
		a = append(a, "-p", string(r.Proto))
	}
	if r.ICMPv6Type != nil {
		a = append(a, "-m", "icmp6", "--icmpv6-type", strconv.Itoa(int(*r.ICMPv6Type)))
	}
	if r.HopLimit != 0 {
		a = append(a, "-m", "hl", "--hl-eq", strconv.Itoa(int(r.HopLimit)))
	}
	if r.DPort != 0 {
		a = append(a, "--dport", strconv.Itoa(int(r.DPort)))
	}
	if r.TCPSyn {
		a = append(a, "--syn")
	}
	if r.Established {
		a = append(a, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
	}
	if r.UID != nil {
		a = append(a, "-m", "owner", "--uid-owner", strconv.FormatUint(uint64(*r.UID), 10))
	}
	return append(a, iptablesTarget(r, fam)...)
}

// iptablesTarget renders what a rule does with the packets it matches: its
// target, and the limit match a log rule has before it.
func iptablesTarget(r rules.Rule, fam rules.Family) []string {
	switch r.Action {
	case rules.Accept:
		return []string{"-j", "RETURN"}
	case rules.Log:
		l := r.Log
		a := []string{"-m", "limit", "--limit", fmt.Sprintf("%d/%s", l.RatePer, l.RateUnit), "--limit-burst", strconv.Itoa(l.Burst)}
		if l.Target == config.LogNflog {
			return append(a, "-j", "NFLOG", "--nflog-group", strconv.Itoa(int(l.Group)), "--nflog-prefix", l.Prefix)
		}
		a = append(a, "-j", "LOG", "--log-prefix", l.Prefix)
		if l.LogUID {
			a = append(a, "--log-uid")
		}
		return a
	case rules.RejectTCPReset:
		return []string{"-j", "REJECT", "--reject-with", "tcp-reset"}
	case rules.RejectPortUnreachable:
		return []string{"-j", "REJECT", "--reject-with", map[rules.Family]string{rules.IPv4: "icmp-port-unreachable", rules.IPv6: "icmp6-port-unreachable"}[fam]}
	case rules.RejectAdminProhibited:
		return []string{"-j", "REJECT", "--reject-with", map[rules.Family]string{rules.IPv4: "icmp-admin-prohibited", rules.IPv6: "icmp6-adm-prohibited"}[fam]}
	}
	return nil
}
