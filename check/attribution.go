// SPDX-License-Identifier: Apache-2.0

package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/monitor/attrib"
)

// attribution watches the self-test's attempts with the monitor's eBPF
// programs, to tell whether the monitor's events will name the process
// that tried on this node.
type attribution struct {
	tr     *attrib.Tracer
	cookie uint64
	err    error
}

// watchAttempts loads the programs and has them look at the throwaway
// namespace at path.
func watchAttempts(path string) *attribution {
	a := &attribution{}
	if a.tr, a.err = attrib.Load(""); a.err != nil {
		return a
	}
	if a.cookie, a.err = attrib.NetnsCookie(path); a.err == nil {
		a.err = a.tr.Fence(a.cookie)
	}
	return a
}

func (a *attribution) close() {
	if a.tr != nil {
		a.tr.Close()
	}
}

// item grades what the programs filed for the attempts: each must name
// this process, which made them.
func (a *attribution) item(enforce bool, attempts int) Item {
	it := Item{Section: "self-test", Name: "attribution"}
	fix := "the monitor's events will not name the process that tried (pid, executable); the rest of each event is unchanged"
	switch {
	case a.err != nil:
		it.Status, it.Detail, it.Fix = Warn, a.err.Error(), fix
		return it
	case !enforce:
		it.Status, it.Detail = Info, "the programs load; audit mode lets attempts through, and only dropped attempts are attributed"
		return it
	}
	var named []string
	for _, f := range a.tr.Filed(a.cookie) {
		p, ok := a.tr.Lookup(f)
		if ok && int(p.Pid) == os.Getpid() {
			named = append(named, fmt.Sprintf("%s:%d by pid %d (%s)", f.Dst, f.Dport, p.Pid, p.Exe))
		}
	}
	if len(named) < attempts {
		it.Status, it.Fix = Warn, fix
		it.Detail = fmt.Sprintf("the programs load, but named %d of %d refused attempts after this process: %s", len(named), attempts, strings.Join(named, ", "))
		return it
	}
	it.Status = OK
	it.Detail = "refused attempts named after the process that made them: " + strings.Join(named, ", ")
	if len(a.tr.Missing) > 0 {
		it.Detail += "; missing: " + strings.Join(a.tr.Missing, "; ")
	}
	return it
}

// vsockItem says what AF_VSOCK is to a fence on this node: a socket
// family that goes past the network namespace, which netfilter never sees.
// It tries one in the throwaway namespace: whether the kernel has it, and
// whether the monitor's programs report a send on it.
func (a *attribution) vsockItem(nsPath string) Item {
	it := Item{Section: "self-test", Name: "AF_VSOCK"}
	fd, err := netns.Socket(nsPath, unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		it.Status, it.Detail = OK, "the kernel has no AF_VSOCK: nothing of that family goes around the fence"
		return it
	}
	if err != nil {
		it.Status, it.Detail = Warn, "trying an AF_VSOCK socket: "+err.Error()
		return it
	}
	defer unix.Close(fd)
	it.Status = Warn
	it.Fix = "give containers a seccomp profile that refuses socket(AF_VSOCK) (Docker's and containerd's default profiles do; unconfined ones do not)"
	it.Detail = "a fenced namespace can open AF_VSOCK sockets, which reach the host (CID 2) or VMs past the fence; the fence does not refuse them (netfilter never sees them, and bypass-hook has no BPF LSM program)"
	if a.tr == nil || !a.tr.WatchesVsock() {
		it.Detail += "; nor does the monitor report them on this node"
		return it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	seen := make(chan attrib.VsockSend, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.tr.ReadVsock(ctx, func(v attrib.VsockSend) {
			if v.Netns == a.cookie && int(v.Process.Pid) == os.Getpid() {
				select {
				case seen <- v:
				default:
				}
				cancel()
			}
		})
	}()
	// To the host; whether it connects or not, the send is what is seen.
	_ = unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: 9})
	_, _ = unix.Write(fd, []byte("bypass-hook check"))
	<-done
	select {
	case v := <-seen:
		it.Detail += fmt.Sprintf("; the monitor reports them: this check's send to CID %d was reported with pid %d (%s)", v.CID, v.Process.Pid, v.Process.Exe)
	default:
		it.Detail += "; the monitor's program loads but did not report this check's send within 2 s"
	}
	return it
}
