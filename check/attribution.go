// SPDX-License-Identifier: Apache-2.0

package check

import (
	"fmt"
	"os"
	"strings"

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
