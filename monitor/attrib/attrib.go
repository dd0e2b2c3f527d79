// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"golang.org/x/sys/unix"
)

// Process is who made an attempt, as the kernel saw it at the socket call.
type Process struct {
	Pid uint32 // thread group id, in the host's pid namespace
	Tid uint32
	// PidInContainer and TidInContainer are the same in the process's own
	// pid namespace (the container's; equal to Pid and Tid on the host).
	PidInContainer uint32
	TidInContainer uint32
	Comm           string // the thread's command name (at most 15 bytes)
	Exe            string // the executable's file name (not its path)
	Ppid           uint32 // the parent's thread group id, host's namespace
	ParentComm     string
	CgroupID       uint64 // the process's cgroup v2 id
	UID, GID       uint32 // as the host sees them
}

// processOf turns a record of the kernel's into a Process.
func processOf(id attribIdent) Process {
	return Process{
		Pid:            id.Pid,
		Tid:            id.Tid,
		PidInContainer: id.NsPid,
		TidInContainer: id.NsTid,
		Comm:           cstring(id.Comm[:]),
		Exe:            cstring(id.Exe[:]),
		Ppid:           id.Ppid,
		ParentComm:     cstring(id.Pcomm[:]),
		CgroupID:       id.CgroupId,
		UID:            id.Uid,
		GID:            id.Gid,
	}
}

// cstring is the text of a NUL-terminated kernel string, cut at the
// first NUL or at the end of b.
func cstring(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return strings.ToValidUTF8(string(s), "\uFFFD")
}

// Tracer is the programs, loaded and attached, and their maps.
type Tracer struct {
	objs  attribObjects
	links []link.Link
	// Missing says what the kernel refused that costs part of the
	// attribution, empty when all of it works.
	Missing []string
	// vsock reads the AF_VSOCK sends; nil without the program.
	vsock *ringbuf.Reader
}

// hooks are the cgroup programs and where they attach. A Tracer does
// without sock_create (it names the senders of raw and ICMP sockets, which
// have no connect or sendmsg program) and sockops (it names the TCP
// attempts of audit mode, which are not dropped).
func (t *Tracer) hooks() []struct {
	name   string
	prog   *ebpf.Program
	attach ebpf.AttachType
} {
	p := &t.objs.attribPrograms
	return []struct {
		name   string
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{
		{"cgroup/connect4", p.NoteConnect4, ebpf.AttachCGroupInet4Connect},
		{"cgroup/connect6", p.NoteConnect6, ebpf.AttachCGroupInet6Connect},
		{"cgroup/sendmsg4", p.NoteSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{"cgroup/sendmsg6", p.NoteSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{"cgroup/sock_create", p.NoteCreate, ebpf.AttachCGroupInetSockCreate},
		{"sockops", p.TcpConnect, ebpf.AttachCGroupSockOps},
	}
}

// Load loads the programs and attaches them: the cgroup programs at
// cgroupRoot ("" finds the cgroup v2 mount), so that they run for every
// process of the host, and the drop tracepoint. The error says what is
// missing (BTF, privilege, a hook the kernel refuses) and what to do.
func Load(cgroupRoot string) (*Tracer, error) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("the kernel has no BTF (/sys/kernel/btf/vmlinux: %w): attribution needs a kernel built with CONFIG_DEBUG_INFO_BTF (5.10 onwards, the default of current distributions)", err)
	}
	if cgroupRoot == "" {
		var err error
		if cgroupRoot, err = CgroupRoot(); err != nil {
			return nil, err
		}
	}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	spec, err := loadAttrib()
	if err != nil {
		return nil, err
	}
	t := &Tracer{}
	if err := loadAll(spec, &t.objs); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("loading the attribution programs: %w: the monitor needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), and no lockdown in confidentiality mode", err)
		}
		// A kernel that refuses sock_create's or sockops' helpers, or has
		// no sock_send_length tracepoint (before 6.4), still has the rest.
		if err2 := loadRequired(spec, &t.objs); err2 != nil {
			return nil, fmt.Errorf("loading the attribution programs: %w (the kernel refuses them: attribution needs BTF tracepoints with kfree_skb's drop reason, bpf_get_current_task_btf in cgroup socket programs and SO_NETNS_COOKIE, Linux 5.17 or later)", err2)
		}
		t.Missing = append(t.Missing, fmt.Sprintf("cgroup/sock_create, sockops and tp_btf/sock_send_length: %v (raw and ICMP sockets and audited TCP attempts are not attributed, AF_VSOCK sends not reported)", err))
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: t.objs.Dropped})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("attaching the tp_btf/kfree_skb program: %w (needs BTF tracepoints with the drop reason, Linux 5.17 or later)", err)
	}
	t.links = append(t.links, l)
	if t.objs.VsockSend != nil {
		if err := t.watchVsock(); err != nil {
			t.Missing = append(t.Missing, fmt.Sprintf("tp_btf/sock_send_length: %v (AF_VSOCK sends are not reported)", err))
		}
	}
	for _, h := range t.hooks() {
		if h.prog == nil {
			continue
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupRoot, Attach: h.attach, Program: h.prog})
		if err != nil {
			switch h.attach {
			case ebpf.AttachCGroupInetSockCreate:
				t.Missing = append(t.Missing, fmt.Sprintf("%s at %s: %v (raw and ICMP sockets are not attributed)", h.name, cgroupRoot, err))
				continue
			case ebpf.AttachCGroupSockOps:
				t.Missing = append(t.Missing, fmt.Sprintf("%s at %s: %v (TCP attempts in audit mode are not attributed)", h.name, cgroupRoot, err))
				continue
			}
			t.Close()
			return nil, fmt.Errorf("attaching %s at the cgroup v2 root %s: %w", h.name, cgroupRoot, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// loadAll loads every program and map; a variable so that a test can
// make it fail as an older kernel would.
var loadAll = func(spec *ebpf.CollectionSpec, objs *attribObjects) error {
	return spec.LoadAndAssign(objs, nil)
}

// loadRequired loads the maps and the programs attribution cannot do
// without, leaving the others nil.
func loadRequired(spec *ebpf.CollectionSpec, objs *attribObjects) error {
	var req struct {
		attribMaps
		Dropped      *ebpf.Program `ebpf:"dropped"`
		NoteConnect4 *ebpf.Program `ebpf:"note_connect4"`
		NoteConnect6 *ebpf.Program `ebpf:"note_connect6"`
		NoteSendmsg4 *ebpf.Program `ebpf:"note_sendmsg4"`
		NoteSendmsg6 *ebpf.Program `ebpf:"note_sendmsg6"`
	}
	if err := spec.LoadAndAssign(&req, nil); err != nil {
		return err
	}
	*objs = attribObjects{attribMaps: req.attribMaps}
	p := &objs.attribPrograms
	p.Dropped, p.NoteConnect4, p.NoteConnect6, p.NoteSendmsg4, p.NoteSendmsg6 =
		req.Dropped, req.NoteConnect4, req.NoteConnect6, req.NoteSendmsg4, req.NoteSendmsg6
	return nil
}

// Close detaches and unloads the programs.
func (t *Tracer) Close() error {
	var errs []error
	if t.vsock != nil {
		errs = append(errs, t.vsock.Close())
	}
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// Fence makes the programs look at the namespace of cookie.
func (t *Tracer) Fence(cookie uint64) error {
	return t.objs.Fenced.Update(cookie, uint8(1), ebpf.UpdateAny)
}

// Unfence stops looking at the namespace of cookie.
func (t *Tracer) Unfence(cookie uint64) error {
	err := t.objs.Fenced.Delete(cookie)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// maxAge is how old a filing may be and still be taken for the attempt a
// log record shows: a 5-tuple comes back when a port is reused, and an
// attempt the log's rate limit left out leaves its drop behind.
const maxAge = 30 * time.Second

// Flow is a dropped packet as a log record shows it.
type Flow struct {
	Netns        uint64 // the namespace's cookie
	Proto        uint8
	Src, Dst     netip.Addr
	Sport, Dport uint16
}

// Lookup takes out the attempt the kernel filed for f: who sent it. It is
// taken out, so that the next attempt of the same 5-tuple (a reused port)
// is not named by this one's.
func (t *Tracer) Lookup(f Flow) (Process, bool) {
	key, ok := keyOf(f)
	if !ok {
		return Process{}, false
	}
	var a attribAttempt
	if err := t.objs.Attempts.LookupAndDelete(&key, &a); err != nil {
		return Process{}, false
	}
	if now, err := bootTime(); err == nil && now-a.DroppedNs > uint64(maxAge) {
		return Process{}, false
	}
	return processOf(a.Who), true
}

// keyOf is the attempts map's key of f.
func keyOf(f Flow) (attribFlow, bool) {
	k := attribFlow{Netns: f.Netns, Proto: f.Proto, Sport: f.Sport, Dport: f.Dport}
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	switch {
	case src.Is4() && dst.Is4():
		k.Family = 4
		a, b := src.As4(), dst.As4()
		copy(k.Saddr[:], a[:])
		copy(k.Daddr[:], b[:])
	case src.Is6() && dst.Is6():
		k.Family = 6
		k.Saddr, k.Daddr = f.Src.As16(), f.Dst.As16()
	default:
		return k, false
	}
	return k, true
}

func bootTime() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Nano()), nil
}

// CgroupRoot is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a host of cgroup v2 alone, /sys/fs/cgroup/unified on a hybrid one.
func CgroupRoot() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding the cgroup v2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 && fields[3] == "/" {
				return fields[4], nil
			}
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted (attribution attaches its socket programs at its root): mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup/unified")
}

// NetnsCookie is the cookie of the network namespace at path: what the
// programs know a namespace by. Unlike an inode number it is never reused
// while the system runs. It needs Linux 5.14 (SO_NETNS_COOKIE).
func NetnsCookie(path string) (uint64, error) {
	// A unix socket: an inet one would run the socket programs.
	fd, err := netns.Socket(path, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("reading the cookie of network namespace %s (SO_NETNS_COOKIE, Linux 5.14 or later): %w", path, err)
	}
	return c, nil
}

// Filed lists the attempts filed for the namespace of cookie and not yet
// looked up, for a self-test that does not know its source ports.
func (t *Tracer) Filed(cookie uint64) []Flow {
	var out []Flow
	var k attribFlow
	var v attribAttempt
	it := t.objs.Attempts.Iterate()
	for it.Next(&k, &v) {
		if k.Netns == cookie {
			out = append(out, flowOf(k))
		}
	}
	return out
}

// flowOf is the Flow of a key of the attempts map.
func flowOf(k attribFlow) Flow {
	f := Flow{Netns: k.Netns, Proto: k.Proto, Sport: k.Sport, Dport: k.Dport}
	if k.Family == 4 {
		f.Src = netip.AddrFrom4([4]byte(k.Saddr[:4]))
		f.Dst = netip.AddrFrom4([4]byte(k.Daddr[:4]))
	} else {
		f.Src, f.Dst = netip.AddrFrom16(k.Saddr), netip.AddrFrom16(k.Daddr)
	}
	return f
}

// MapMemory is what the programs' maps take in the kernel, in bytes, as
// the kernel counts it (memlock): the LRU maps are allocated whole at
// load, the map of fenced namespaces as it fills.
func (t *Tracer) MapMemory() (uint64, error) {
	var sum uint64
	for _, m := range []*ebpf.Map{t.objs.Fenced, t.objs.Sockets, t.objs.Attempts, t.objs.Scratch} {
		info, err := m.Info()
		if err != nil {
			return 0, err
		}
		n, ok := info.Memlock()
		if !ok {
			return 0, errors.New("the kernel does not say what a map takes (memlock)")
		}
		sum += n
	}
	return sum, nil
}
