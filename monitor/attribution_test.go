// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"github.com/bypass-hook/bypass-hook/monitor/attrib/attribtest"
)

// TestMonitorNamesTheProcess: in a fenced namespace, programs that each make
// one direct attempt as nobody and exit at once (TCP over IPv4 and IPv6,
// UDP), and two programs trying at the same moment: every event names the
// program's pid and executable, on both log targets, though the process is
// gone from /proc before the event is looked at.
func TestMonitorNamesTheProcess(t *testing.T) {
	testnet.RequireRoot(t)
	for _, target := range []string{config.LogKernel, config.LogNflog} {
		t.Run(target, func(t *testing.T) { namesTheProcess(t, target) })
	}
}

func namesTheProcess(t *testing.T, target string) {
	prepareTarget(t, target)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: %s, prefix: %s}\n", proxyAddr, target, testnet.RandName("a")))
	mon := startMonitor(t, cfgPath)
	if !strings.Contains(mon.stderr.String(), "attribution on") {
		t.Fatalf("the monitor did not start attribution on a kernel that has it; stderr:\n%s", mon.stderr.String())
	}
	s := newSleeper(t, cfgPath)
	ns := &testnet.Netns{Name: s.id, Path: s.nsPath}
	ns.Exec(t, "ip", "addr", "add", "2001:db8:a7::50/64", "dev", "v0", "nodad")
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
	if target == config.LogNflog {
		mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	}

	n := 0
	for _, c := range []struct{ name, proto, addr string }{
		{"try-tcp4", "tcp", refusedAddr},
		{"try-tcp6", "tcp", "[2001:db8:a7::9]:443"},
		{"try-udp4", "udp", "198.51.100.1:53"},
	} {
		pid := attribtest.NewProgram(t, c.name).Run(t, ns, c.proto, c.addr)
		n++
		evs := mon.waitEvents(s.id, n, eventWait)
		if len(evs) < n {
			t.Fatalf("no event for %s's attempt %s %s; monitor stderr:\n%s", c.name, c.proto, c.addr, mon.stderr.String())
		}
		ev := evs[n-1]
		dst := netip.MustParseAddrPort(c.addr)
		if ev.Proto != c.proto || ev.Dst != dst.Addr().String() || ev.Dport != dst.Port() {
			t.Fatalf("event %+v; want %s to %s", ev, c.proto, c.addr)
		}
		wantProcess(t, ev, pid, pid, c.name)
	}

	// Two programs at the same moment, to the same destination.
	a, b := attribtest.NewProgram(t, "try-first"), attribtest.NewProgram(t, "try-second")
	at := time.Now().Add(300 * time.Millisecond)
	pids := map[string]int{}
	var cmds []*exec.Cmd
	for name, p := range map[string]attribtest.Program{"try-first": a, "try-second": b} {
		cmd, err := p.Start(ns, "tcp", refusedAddr, at)
		if err != nil {
			t.Fatal(err)
		}
		pids[name] = cmd.Process.Pid
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	evs := mon.waitEvents(s.id, n+2, eventWait)
	if len(evs) < n+2 {
		t.Fatalf("%d events for the two programs at once, want 2: %+v", len(evs)-n, evs[n:])
	}
	for _, ev := range evs[n : n+2] {
		pid, ok := pids[ev.Exe]
		if !ok {
			t.Errorf("event %+v names neither program", ev)
			continue
		}
		wantProcess(t, ev, pid, pid, ev.Exe)
		delete(pids, ev.Exe)
	}
	if len(pids) != 0 {
		t.Errorf("no event named %v", pids)
	}
	line, _ := json.Marshal(evs[0])
	t.Logf("an event: %s", line)
}

// wantProcess checks the process an event names, gone from /proc by now.
func wantProcess(t *testing.T, ev Event, pid, pidInContainer int, exe string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		t.Errorf("pid %d is still in /proc: the test means a process that is gone", pid)
	}
	if ev.Pid == nil || int(*ev.Pid) != pid || int(ev.PidInContainer) != pidInContainer || ev.Exe != exe || ev.Comm == "" {
		got := "null"
		if ev.Pid != nil {
			got = strconv.Itoa(int(*ev.Pid))
		}
		t.Errorf("event names pid %s, pidInContainer %d, exe %q, comm %q; want pid %d, pidInContainer %d, exe %q (event %+v)",
			got, ev.PidInContainer, ev.Exe, ev.Comm, pid, pidInContainer, exe, ev)
	}
}

// TestMonitorNamesTheProcessInRunc: a runc container with its own pid
// namespace; the event names the attempt's pid as the host sees it and as
// the container does, and busybox as the executable of nc.
func TestMonitorNamesTheProcessInRunc(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "runc", "busybox", "tinyproxy")
	lab := testnet.NewLab(t)
	for _, target := range []string{config.LogKernel, config.LogNflog} {
		t.Run(target, func(t *testing.T) {
			client := lab.AddClient(t)
			prepareTarget(t, target)
			cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q, %q]\nlog: {target: %s, prefix: %s}\n",
				lab.ProxyV4, lab.ProxyV6, target, testnet.RandName("r")))
			mon := startMonitor(t, cfgPath)
			hooks := &specs.Hooks{
				CreateRuntime: []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", cfgPath, "create"}}},
				Poststop:      []specs.Hook{{Path: hookBin, Args: []string{"bypass-hook", "--config", cfgPath, "poststop"}}},
			}
			bundle := testnet.NewBundle(t, testnet.BundleOpts{NetnsPath: client.Path, Hooks: hooks})
			id := testnet.RandName("att-") + "-0123456789abcdef"
			if err := bundle.Create(t, id); err != nil {
				t.Fatal(err)
			}
			if err := bundle.Start(t); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bundle.Delete(t) })
			mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
			if target == config.LogNflog {
				mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
			}
			for i, dst := range []netip.Addr{lab.ServerV4, lab.ServerV6} {
				pidFile := filepath.Join(t.TempDir(), "pid")
				// sh says its pid in the container, then becomes nc.
				out, _ := bundle.Runc("exec", "--pid-file", pidFile, "--user", "65534:65534", id,
					"sh", "-c", fmt.Sprintf("echo $$; exec nc -w 3 %s %d", dst, testnet.HTTPPort))
				hostPid, err := os.ReadFile(pidFile)
				if err != nil {
					t.Fatal(err)
				}
				// Its stdout and nc's stderr come mixed: the line of digits.
				inside := 0
				for _, l := range strings.Split(out, "\n") {
					if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
						inside = n
					}
				}
				if inside == 0 {
					t.Fatalf("runc exec printed %q, want a line with the pid", out)
				}
				evs := mon.waitEvents(id, i+1, eventWait)
				if len(evs) <= i {
					t.Fatalf("no event for nc to %s; monitor stderr:\n%s", dst, mon.stderr.String())
				}
				ev := evs[i]
				host, _ := strconv.Atoi(strings.TrimSpace(string(hostPid)))
				if host == inside {
					t.Fatalf("the container's pid %d is the host's: no pid namespace of its own", inside)
				}
				wantProcess(t, ev, host, inside, "busybox")
				if ev.Comm != "nc" || ev.UID == nil || *ev.UID != 65534 {
					t.Errorf("event comm %q uid %s; want nc, 65534", ev.Comm, uidOf(ev))
				}
				line, _ := json.Marshal(ev)
				t.Logf("an event: %s", line)
			}
		})
	}
}

// TestMonitorReportsVsock: a program of a fenced namespace that sends on an
// AF_VSOCK socket as nobody and exits at once (the fence never sees it) is
// reported: one event, action bypassed, with its pid, executable and the
// peer's CID and port.
func TestMonitorReportsVsock(t *testing.T) {
	testnet.RequireRoot(t)
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		t.Skip("skipping: this kernel has no AF_VSOCK")
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: nflog, prefix: %s}\n", proxyAddr, testnet.RandName("v")))
	mon := startMonitor(t, cfgPath)
	s := newSleeper(t, cfgPath)
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
	ns := &testnet.Netns{Name: s.id, Path: s.nsPath}
	pid := attribtest.NewProgram(t, "try-vsock").Run(t, ns, "vsock", "2:9")
	evs := mon.waitEvents(s.id, 1, eventWait)
	if len(evs) != 1 {
		t.Fatalf("%d events for an AF_VSOCK send, want 1: %+v; monitor stderr:\n%s", len(evs), evs, mon.stderr.String())
	}
	ev := evs[0]
	if ev.Proto != "vsock" || ev.Action != ActionBypassed || ev.VsockCID == nil || *ev.VsockCID != 2 || ev.VsockPort != 9 ||
		ev.Source != "ebpf" || !strings.Contains(ev.Hint, "seccomp") {
		t.Errorf("event %+v; want proto vsock, action bypassed, CID 2, port 9, source ebpf, a hint", ev)
	}
	wantProcess(t, ev, pid, pid, "try-vsock")
	line, _ := json.Marshal(ev)
	t.Logf("an event: %s", line)
	if n := metric(mon.scrape(t), "bypass_hook_attempts_total", map[string]string{"container": s.id, "proto": "vsock", "action": ActionBypassed}); n != 1 {
		t.Errorf("bypass_hook_attempts_total of the AF_VSOCK send: %v, want 1", n)
	}
}

// TestMonitorWithoutAttribution: a monitor on a host where the programs
// cannot be attached (here: no cgroup v2 hierarchy in its mount namespace)
// says once why its events do not name the process, and its events carry
// everything else.
func TestMonitorWithoutAttribution(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "unshare", "umount", "sh")
	prepareTarget(t, config.LogKernel)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: kernel, prefix: %s}\n", proxyAddr, testnet.RandName("n")))
	unshare, _ := testnet.Tool("unshare")
	// In a mount namespace of its own, without /sys/fs/cgroup and what is
	// mounted under it (the cgroup v2 hierarchy, hybrid or not).
	mon := startMonitorUnder(t, []string{unshare, "--mount", "--propagation", "private", "--",
		"sh", "-c", `umount -l /sys/fs/cgroup && exec "$0" "$@"`}, cfgPath)
	s := newSleeper(t, cfgPath)
	ns := &testnet.Netns{Name: s.id, Path: s.nsPath}
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_fenced_namespaces", nil, 1, eventWait)
	attribtest.NewProgram(t, "try-unnamed").Run(t, ns, "tcp", refusedAddr)
	evs := mon.waitEvents(s.id, 1, eventWait)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1; monitor stderr:\n%s", len(evs), mon.stderr.String())
	}
	if ev := evs[0]; ev.Pid != nil || ev.Exe != "" || ev.Comm != "" || ev.Dport == 0 || ev.UID == nil || *ev.UID != testnet.Nobody {
		t.Errorf("event %+v; want no process, and the rest", ev)
	}
	if n := strings.Count(mon.stderr.String(), "events do not name the process that tried"); n != 1 ||
		!strings.Contains(mon.stderr.String(), "no cgroup v2 hierarchy is mounted") {
		t.Errorf("the monitor said %d times why attribution is off (want once, saying the cgroup v2 hierarchy is missing); stderr:\n%s", n, mon.stderr.String())
	}
}

// TestMonitorNamesAuditedTCP: in audit mode the fence lets the attempt
// through and drops nothing; its event still names the program, from what
// the kernel filed as its SYN left.
func TestMonitorNamesAuditedTCP(t *testing.T) {
	testnet.RequireRoot(t)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nmode: audit\nlog: {target: nflog, prefix: %s}\n", proxyAddr, testnet.RandName("u")))
	mon := startMonitor(t, cfgPath)
	s := newSleeper(t, cfgPath)
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	ns := &testnet.Netns{Name: s.id, Path: s.nsPath}
	// Let through to the sleeper's veth, where nothing answers: the
	// program gives up after a second.
	pid := attribtest.NewProgram(t, "try-audited").Run(t, ns, "tcp", refusedAddr)
	evs := mon.waitEvents(s.id, 1, eventWait)
	if len(evs) != 1 || evs[0].Action != ActionAudited {
		t.Fatalf("events %+v; want one audited; monitor stderr:\n%s", evs, mon.stderr.String())
	}
	wantProcess(t, evs[0], pid, pid, "try-audited")
}

// TestMonitorNamesTheSenderOfAHandedSocket: a UDP socket connected by one
// program and sent on by another (handed over across an exec, or over a
// unix socket). A send on a connected UDP socket runs no cgroup sendmsg
// program (the kernel runs it only for a send that names an address), so
// the connector's note is all the socket has: the drop program names the
// task it runs in instead, the sender, for a datagram socket (whose packet
// the fence drops in the sending system call). Named after the connector,
// a workload could put its attempts under the name of an innocent
// executable.
func TestMonitorNamesTheSenderOfAHandedSocket(t *testing.T) {
	testnet.RequireRoot(t)
	prepareTarget(t, config.LogNflog)
	cfgPath, _ := writeConfig(t, fmt.Sprintf("proxies: [%q]\nlog: {target: nflog, prefix: %s}\n", proxyAddr, testnet.RandName("h")))
	mon := startMonitor(t, cfgPath)
	if !strings.Contains(mon.stderr.String(), "attribution on") {
		t.Fatalf("the monitor did not start attribution on a kernel that has it; stderr:\n%s", mon.stderr.String())
	}
	s := newSleeper(t, cfgPath)
	ns := &testnet.Netns{Name: s.id, Path: s.nsPath}
	if err := s.hook("create"); err != nil {
		t.Fatal(err)
	}
	mon.waitMetric(t, "bypass_hook_nflog_sockets", nil, 1, eventWait)
	sender := attribtest.NewProgram(t, "try-sender")
	pid := attribtest.NewProgram(t, "try-connector").Run(t, ns, "udp-exec", "198.51.100.1:53 "+sender.Path)
	evs := mon.waitEvents(s.id, 1, eventWait)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1; monitor stderr:\n%s", len(evs), mon.stderr.String())
	}
	wantProcess(t, evs[0], pid, pid, "try-sender")
}
