// SPDX-License-Identifier: Apache-2.0

package check

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/internal/osthread"
)

// SelfTest is what the live test measured.
type SelfTest struct {
	Netns    string         `json:"netns"`
	Backend  string         `json:"backend"`
	Rules    int            `json:"rules"`
	Features rules.Features `json:"features"` // what the kernel let the fence use
	FenceMs  float64        `json:"fenceMs"`  // the hook's create, whole
	Attempts []Attempt      `json:"attempts"`
	// Logged is whether a log line of the attempts was seen (kernel
	// target) or the log rule counted them (nflog); LogMs is from the first
	// attempt to the line.
	Logged    bool    `json:"logged"`
	LogMs     float64 `json:"logMs,omitempty"`
	LogDetail string  `json:"logDetail"`
	RemoveMs  float64 `json:"removeMs"` // the hook's poststop, whole
	Removed   bool    `json:"removed"`
	// Attribution says whether the monitor's eBPF programs named this
	// process for the refused attempts: whether events will name the
	// process that tried on this node.
	Attribution string `json:"attribution,omitempty"`
	// Vsock says whether a fenced namespace can open AF_VSOCK sockets
	// (which go past the fence), and whether the monitor reports them.
	Vsock string `json:"vsock,omitempty"`
	// HookWarnings are what the hook logged at warning level or above.
	HookWarnings []string `json:"hookWarnings,omitempty"`
}

// Attempt is one direct connection out of the fenced namespace.
type Attempt struct {
	To      string  `json:"to"`
	Refused bool    `json:"refused"` // ECONNREFUSED, as the fence answers
	Ms      float64 `json:"ms"`
	Result  string  `json:"result"`
}

// The throwaway namespace's link and addresses. Nothing answers on the
// other end of the link: what the fence lets pass vanishes there.
const testLink = "bhcheck0"

var (
	testAddrs   = []string{"198.51.100.2/24", "2001:db8:5e1f::2/64"}
	testTargets = []string{"198.51.100.77:80", "203.0.113.77:80", "[2001:db8:5e1f::77]:80", "[2001:db8:77::77]:80"}
)

// runSelfTest fences a namespace of its own as the hook fences a
// container (hook.Create with a state that points at it), tries direct
// connections out, looks for the log line, and takes the fence out again
// (hook.Poststop). Its state directory is a temporary one, so the host's
// records and a running monitor never see it.
func runSelfTest(cfg *config.Config, backendName string) (*SelfTest, []Item) {
	fail := func(what string, err error, fix string) (*SelfTest, []Item) {
		return nil, []Item{{Section: "self-test", Name: what, Status: Fail, Detail: err.Error(), Fix: fix}}
	}
	if os.Geteuid() != 0 {
		return fail("live fence", errors.New("not run: it needs root (it makes a network namespace and fences it)"), "run bypass-hook check as root")
	}
	c, notes := selfTestConfig(cfg)

	tmp, err := os.MkdirTemp("", "bypass-hook-check-")
	if err != nil {
		return fail("live fence", err, "")
	}
	defer os.RemoveAll(tmp)
	c.StateDir = filepath.Join(tmp, "state")
	bundle := filepath.Join(tmp, "bundle")
	if err := writeBundle(bundle); err != nil {
		return fail("live fence", err, "")
	}

	ns, err := newThrowaway()
	if err != nil {
		return fail("namespace", err, "the self-test needs network namespaces and a dummy link (CONFIG_DUMMY) or veth pair (CONFIG_VETH)")
	}
	defer ns.close()
	return fenceThrowaway(c, bundle, ns, &SelfTest{Backend: backendName}, notes)
}

// fenceThrowaway runs the hook's create on the throwaway namespace, tries
// the connections, looks for their log line and runs the hook's poststop.
// The items follow that order; out gets what each step measured.
func fenceThrowaway(c *config.Config, bundle string, ns *throwaway, out *SelfTest, items []Item) (*SelfTest, []Item) {
	id := "check" + randomHex(16)
	log, warnings := captureLog()
	h := hook.New(c, log)
	st := &specs.State{Version: specs.Version, ID: id, Status: specs.StateCreated, Pid: ns.tid, Bundle: bundle,
		Annotations: map[string]string{config.AnnotationPrefix + "enabled": "true"}}

	start := time.Now()
	res, err := h.Create(st)
	out.FenceMs = ms(time.Since(start))
	if err != nil {
		out.HookWarnings = warnings()
		return out, append(items, Item{Section: "self-test", Name: "fence", Status: Fail,
			Detail: fmt.Sprintf("the hook could not fence a namespace of its own: %v", err),
			Fix:    "this is what a container start would meet; the kernel and tools items above say what is missing"})
	}
	defer func() {
		// Whatever happened, the fence goes; Poststop below normally did it.
		_, _ = hook.New(c, logrus.New()).Poststop(st)
	}()
	out.Netns, out.Rules, out.Backend = res.Netns, res.Rules, res.Backend
	rec, err := loadRecord(c.StateDir, ns.id.Key())
	if err != nil || rec == nil {
		return out, append(items, Item{Section: "self-test", Name: "fence", Status: Fail, Detail: fmt.Sprintf("the hook fenced but left no record: %v", err)})
	}
	out.Features, out.Backend = rec.Features, rec.Backend
	items = append(items, Item{Section: "self-test", Name: "fence", Status: OK,
		Detail: fmt.Sprintf("%s: %d rules by the %s backend in %.1f ms (conntrack %v, log %v)", res.Netns, res.Rules, rec.Backend, out.FenceMs, rec.Features.Conntrack, rec.Features.Log)})

	prefix := rules.LogPrefix(c.Log.Prefix, id)
	kmsg, kmsgErr := openKmsg()
	if kmsg != nil {
		defer kmsg.Close()
	}
	enforce := c.Mode == config.ModeEnforce
	attr := watchAttempts(ns.path)
	defer attr.close()
	first := time.Now()
	for _, to := range pickTargets(c) {
		out.Attempts = append(out.Attempts, ns.connect(to, enforce))
	}
	items = append(items, attemptItems(out.Attempts, enforce)...)
	attrItem := attr.item(enforce, len(out.Attempts))
	out.Attribution = attrItem.Detail
	vsockItem := attr.vsockItem(ns.path)
	out.Vsock = vsockItem.Detail
	items = append(items, attrItem, vsockItem)

	out.Logged, out.LogMs, out.LogDetail = findLogLine(c, prefix, kmsg, kmsgErr, first, rec, ns)
	items = append(items, logItem(out, c.Log.Required || !enforce, rec.Features.Log))
	items = append(items, removeFence(h, st, rec.Backend, ns, out))
	out.HookWarnings = warnings()
	for _, w := range out.HookWarnings {
		// Info: each cause is graded by its own item above.
		items = append(items, Item{Section: "self-test", Name: "hook log", Status: Info, Detail: "warning: " + w})
	}
	return out, items
}

// loadRecord reads the record the hook left in its state directory; nil
// if there is none.
func loadRecord(stateDir, key string) (*records.Record, error) {
	store, err := records.Open(stateDir)
	if err != nil {
		return nil, err
	}
	return store.Load(key)
}

// attemptItems grades each attempt: enforce mode must refuse it, audit
// mode must let it through.
func attemptItems(attempts []Attempt, enforce bool) []Item {
	var items []Item
	for _, a := range attempts {
		it := Item{Section: "self-test", Name: "connect " + a.To, Status: OK, Detail: fmt.Sprintf("%s in %.1f ms", a.Result, a.Ms)}
		switch {
		case enforce && !a.Refused:
			it.Status = Fail
			it.Fix = "a direct connection out of a fenced namespace was not refused: report this with the output of --json"
		case !enforce && a.Refused:
			it.Status = Fail
			it.Fix = "audit mode refused a connection: report this with the output of --json"
		case !enforce:
			it.Detail += " (audit: let through, as configured)"
		}
		items = append(items, it)
	}
	return items
}

// findLogLine looks for what the log rules made of the attempts: the
// kernel log line with prefix (kernel target), or the log rules' counters
// (nflog). logMs is from the first attempt to the line.
func findLogLine(c *config.Config, prefix string, k *kmsg, kErr error, first time.Time, rec *records.Record, ns *throwaway) (logged bool, logMs float64, detail string) {
	switch {
	case c.Log.Target == config.LogKernel && kErr != nil:
		return false, 0, "cannot read /dev/kmsg: " + kErr.Error()
	case c.Log.Target == config.LogKernel && KernelLogWarning(c.Log.Target) != "":
		// The kernel drops the line; waiting for it would only cost time.
		return false, 0, "no kernel log line: nf_log_all_netns is not 1, so the kernel drops the lines of this namespace"
	case c.Log.Target == config.LogKernel:
		if at, ok := k.waitFor(prefix, 2*time.Second); ok {
			logMs = ms(at.Sub(first))
			return true, logMs, fmt.Sprintf("kernel log line %q seen %.1f ms after the first attempt", strings.TrimSpace(prefix), logMs)
		}
		return false, 0, fmt.Sprintf("no kernel log line with prefix %q within 2 s", strings.TrimSpace(prefix))
	default:
		logged, detail = logRuleCounted(rec, ns)
		return logged, 0, detail
	}
}

// logItem grades the log line: a missing one fails where the config
// requires it or in audit mode, where the log is all the fence does.
func logItem(out *SelfTest, required, logRules bool) Item {
	it := Item{Section: "self-test", Name: "log line", Status: OK, Detail: out.LogDetail}
	if !out.Logged {
		it.Status = Warn
		if required {
			it.Status = Fail
		}
		it.Fix = "see nf_log_all_netns and the LOG/NFLOG and limit items above; the hook log says what it left out"
		if !logRules {
			it.Detail += " (the hook installed the fence without log rules: the kernel refused them)"
		}
	}
	return it
}

// removeFence runs the hook's poststop and checks with the fence's
// backend that no rule of it is left in the namespace.
func removeFence(h *hook.Hook, st *specs.State, backendName string, ns *throwaway, out *SelfTest) Item {
	start := time.Now()
	_, err := h.Poststop(st)
	out.RemoveMs = ms(time.Since(start))
	if err == nil {
		err = rulesGone(backendName, ns)
	}
	out.Removed = err == nil
	if err != nil {
		return Item{Section: "self-test", Name: "remove", Status: Fail, Detail: err.Error()}
	}
	return Item{Section: "self-test", Name: "remove", Status: OK, Detail: fmt.Sprintf("fence removed in %.1f ms", out.RemoveMs)}
}

// rulesGone is nil when the backend sees none of the fence's rules in the
// namespace.
func rulesGone(backendName string, ns *throwaway) error {
	b, err := backend.New(backendName)
	if err != nil {
		return err
	}
	seen, err := b.Inspect(netns.Handle{ID: ns.id, Path: ns.path})
	if err != nil {
		return err
	}
	if seen.Present {
		return errors.New("the rules are still in the namespace after poststop")
	}
	return nil
}

// selfTestConfig is the config the self-test fences with: the one checked,
// with stand-in proxies when it has none (so that the kernel is tested all
// the same; the config item fails on its own).
func selfTestConfig(cfg *config.Config) (*config.Config, []Item) {
	c := *cfg
	var items []Item
	if len(c.ProxyAddrs()) == 0 {
		c.Proxies = []string{"198.51.100.1:3128", "[2001:db8:5e1f::1]:3128"}
		if err := c.Validate(); err != nil {
			panic(err) // constant proxies always validate
		}
		items = append(items, Item{Section: "self-test", Name: "proxies", Status: Info,
			Detail: "the config has none; the self-test uses 198.51.100.1:3128 and [2001:db8:5e1f::1]:3128 to test the kernel"})
	}
	for _, u := range c.AllowUids {
		if u == int64(os.Geteuid()) {
			items = append(items, Item{Section: "self-test", Name: "allowUids", Status: Info,
				Detail: fmt.Sprintf("allowUids has %d, the uid the self-test connects as: its attempts pass the fence by design", u)})
		}
	}
	return &c, items
}

// pickTargets picks a destination per family that the policy does not
// allow: the self-test's attempts must meet the refusal.
func pickTargets(c *config.Config) []string {
	allowed := func(ap netip.AddrPort) bool {
		for _, p := range c.ProxyAddrs() {
			if p == ap {
				return true
			}
		}
		for _, a := range c.Allow {
			if pfx, err := netip.ParsePrefix(a.CIDR); err == nil && pfx.Contains(ap.Addr()) {
				return true
			}
			if addr, err := netip.ParseAddr(a.CIDR); err == nil && addr == ap.Addr() {
				return true
			}
		}
		return false
	}
	var out []string
	done := map[bool]bool{}
	for _, t := range testTargets {
		ap := netip.MustParseAddrPort(t)
		if !done[ap.Addr().Is4()] && !allowed(ap) {
			out = append(out, t)
			done[ap.Addr().Is4()] = true
		}
	}
	return out
}

// throwaway is a network namespace held by one locked OS thread: it dies
// with that thread, whatever becomes of the check.
type throwaway struct {
	tid  int
	id   netns.ID
	path string
	done chan struct{}
	once sync.Once
}

func newThrowaway() (*throwaway, error) {
	t := &throwaway{done: make(chan struct{})}
	ready := make(chan error, 1)
	// The thread ends with the namespace it made, never put back.
	go osthread.Run(func() bool {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("making a network namespace: %w", err)
			return false
		}
		t.tid = unix.Gettid()
		ready <- setupLinks()
		<-t.done
		return false
	})
	if err := <-ready; err != nil {
		t.close()
		return nil, err
	}
	t.path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), t.tid)
	id, err := netns.Stat(t.path)
	if err != nil {
		t.close()
		return nil, err
	}
	t.id = id
	return t, nil
}

func (t *throwaway) close() { t.once.Do(func() { close(t.done) }) }

// setupLinks brings up lo and a link with an address of each family and
// default routes through it, in the calling thread's namespace: a dummy
// link, or where the kernel has none, a veth pair with both ends in the
// namespace. Either way nothing answers and nothing leaves it.
func setupLinks() error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	attrs := netlink.LinkAttrs{Name: testLink}
	if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); err != nil {
		peer := testLink + "p"
		if verr := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer}); verr != nil {
			return fmt.Errorf("adding a dummy link (%v) or a veth pair (%w)", err, verr)
		}
		if p, err := netlink.LinkByName(peer); err != nil || netlink.LinkSetUp(p) != nil {
			return fmt.Errorf("bringing up %s: %v", peer, err)
		}
	}
	link, err := netlink.LinkByName(testLink)
	if err != nil {
		return err
	}
	for _, a := range testAddrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		addr.Flags = unix.IFA_F_NODAD // usable at once, without duplicate address detection
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("adding %s to %s: %w", a, testLink, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return err
	}
	for _, dst := range []string{"0.0.0.0/0", "::/0"} {
		_, n, _ := net.ParseCIDR(dst)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: n}); err != nil {
			return fmt.Errorf("default route %s via %s: %w", dst, testLink, err)
		}
	}
	return nil
}

// connect tries one direct TCP connection from inside the namespace.
func (t *throwaway) connect(to string, expectRefused bool) Attempt {
	a := Attempt{To: to}
	timeout := 3 * time.Second
	if !expectRefused {
		timeout = time.Second // audit: nothing answers on a dummy link
	}
	start := time.Now()
	err := netns.In(t.path, func() error {
		conn, err := net.DialTimeout("tcp", to, timeout)
		if err == nil {
			conn.Close()
		}
		return err
	})
	a.Ms = ms(time.Since(start))
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		a.Refused, a.Result = true, "refused (ECONNREFUSED)"
	case errors.As(err, &ne) && ne.Timeout():
		a.Result = "not refused: timed out"
	case err == nil:
		a.Result = "not refused: connected"
	default:
		a.Result = "not refused: " + err.Error()
	}
	return a
}

// logRuleCounted reads the fence's counters: for the nflog target the
// self-test does not bind the group (the monitor does), it sees the log
// rule count the attempts.
func logRuleCounted(rec *records.Record, t *throwaway) (bool, string) {
	b, err := backend.New(rec.Backend)
	if err != nil {
		return false, err.Error()
	}
	counters, err := b.Counters(netns.Handle{ID: t.id, Path: t.path})
	if err != nil {
		return false, "reading the counters: " + err.Error()
	}
	_, tally := rules.TallyCounters(rec.RuleNames, counters)
	if tally.Logged == 0 {
		return false, "the log rules counted no packet"
	}
	return true, fmt.Sprintf("the NFLOG rules passed %d packet(s) to group %d (bypass-hook monitor reads it)", tally.Logged, rec.Policy.Log.Group)
}

// kmsg reads the kernel log from its end on.
type kmsg struct{ f *os.File }

func openKmsg() (*kmsg, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &kmsg{os.NewFile(uintptr(fd), "/dev/kmsg")}, nil
}

func (k *kmsg) Close() error { return k.f.Close() }

// waitFor returns when a record holding s was read, and whether one was.
func (k *kmsg) waitFor(s string, within time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(within)
	buf := make([]byte, 8192) // one record per read
	for time.Now().Before(deadline) {
		n, err := unix.Read(int(k.f.Fd()), buf)
		switch {
		case err == unix.EAGAIN:
			time.Sleep(10 * time.Millisecond)
		case err == unix.EPIPE:
			// Overwritten before we read it: read on.
		case err != nil:
			return time.Time{}, false
		case strings.Contains(string(buf[:n]), s):
			return time.Now(), true
		}
	}
	return time.Time{}, false
}

// writeBundle writes the config.json the hook reads for capabilities: a
// process with none.
func writeBundle(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"),
		[]byte(`{"ociVersion":"`+specs.Version+`","process":{"capabilities":{}},"linux":{"namespaces":[{"type":"network"}]}}`), 0o600)
}

// captureLog is a logger for the hook that keeps its warnings.
func captureLog() (*logrus.Entry, func() []string) {
	var mu sync.Mutex
	var got []string
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.AddHook(hookFunc(func(e *logrus.Entry) {
		if e.Level <= logrus.WarnLevel {
			msg := e.Message
			if err, ok := e.Data[logrus.ErrorKey]; ok && err != nil {
				msg += ": " + fmt.Sprint(err)
			}
			mu.Lock()
			got = append(got, msg)
			mu.Unlock()
		}
	}))
	return logrus.NewEntry(l), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

type hookFunc func(*logrus.Entry)

func (hookFunc) Levels() []logrus.Level       { return logrus.AllLevels }
func (f hookFunc) Fire(e *logrus.Entry) error { f(e); return nil }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
