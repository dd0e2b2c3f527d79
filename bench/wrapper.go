// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bypass-hook/bypass-hook/wrapper"
)

// runtimeBin is the runtime wrapper to time (-runtime); "" leaves it out.
var runtimeBin string

// wrapperBench times what the runtime wrapper adds to a container's start,
// as an engine calls it: against runc called directly, and the minimal
// binary.
type wrapperBench struct {
	runc, through, create floor
	cfg, spec, bundle     string
	hookBin, runtimeBin   string
}

// addWrapper sets up the wrapper's rows: runc --version directly and
// through the wrapper (its pass-through: every command but create and
// run), and a create that selects the container and writes the hooks into
// a fresh config.json before it execs the runtime (here /bin/true, so
// that only the wrapper's own work is timed).
func (rg *rig) addWrapper(dir, bin, hookBin string) error {
	if bin == "" {
		return nil
	}
	bin, _ = filepath.Abs(bin)
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%v (run `make bench`, which builds it)", err)
	}
	runc, err := wrapper.FindRuntime("runc", "")
	if err != nil {
		return err
	}
	w := &wrapperBench{
		runc:    floor{name: "runc --version, called directly", argv: []string{runc, "--version"}},
		through: floor{name: "runc --version through the runtime wrapper", argv: []string{bin, "--version"}},
		create:  floor{name: "runtime wrapper create, selected (writes the hooks, then /bin/true)"},
		cfg:     filepath.Join(dir, "wrapper.yaml"), bundle: filepath.Join(dir, "wrapper-bundle"),
		hookBin: hookBin, runtimeBin: bin,
	}
	y := policyYAML + "selection: all\nstateDir: " + filepath.Join(dir, "state-wrapper") + "\nhookLog: " + filepath.Join(dir, "wrapper.log") + "\n"
	if err := os.WriteFile(w.cfg, []byte(y), 0o600); err != nil {
		return err
	}
	if err := os.Mkdir(w.bundle, 0o700); err != nil {
		return err
	}
	// What an engine writes, in size: the process with its environment,
	// mounts, namespaces, capabilities.
	w.spec = `{"ociVersion":"1.0.2","process":{"args":["sleep","1000"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","HOSTNAME=c0ffee","BYPASS_HOOK_ENABLED=true"],"cwd":"/","capabilities":{"bounding":["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]}},"root":{"path":"rootfs"},"mounts":[{"destination":"/proc","type":"proc","source":"proc"},{"destination":"/dev","type":"tmpfs","source":"tmpfs"}],"linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}`
	rg.wrapper = w
	return nil
}

// wrapperSteps time the wrapper's rows in the rounds, among the hooks.
func (rg *rig) wrapperSteps() []step {
	w := rg.wrapper
	if w == nil {
		return nil
	}
	return []step{
		func(round int) error { return w.runc.time(round) },
		func(round int) error { return w.through.time(round) },
		func(round int) error {
			if err := os.WriteFile(filepath.Join(w.bundle, "config.json"), []byte(w.spec), 0o600); err != nil {
				return err
			}
			w.create.argv = []string{w.runtimeBin, wrapper.FlagConfig, w.cfg, wrapper.FlagRuntime, "/bin/true",
				wrapper.FlagHook, w.hookBin, "create", "--bundle", w.bundle, fmt.Sprintf("bench-%d", round)}
			return w.create.time(round)
		},
	}
}

// printWrapper reports the wrapper's rows with their ratios to runc called
// directly and to the minimal binary.
func (w *wrapperBench) print(out io.Writer, minimal time.Duration) {
	if w == nil {
		return
	}
	runc := median(durations(w.runc.runs))
	fmt.Fprintln(out, "\nRuntime wrapper (bypass-hook-runtime), as an engine calls it:")
	fmt.Fprintln(out, "| step | median | p99 | vs runc --version | vs minimal |")
	fmt.Fprintln(out, "|---|---|---|---|---|")
	for _, f := range []*floor{&w.runc, &w.through, &w.create} {
		d := durations(f.runs)
		m := median(d)
		fmt.Fprintf(out, "| %s | %s | %s | %.2fx | %.2fx |\n", f.name, ms(m), ms(quantile(d, 0.99)), float64(m)/float64(runc), float64(m)/float64(minimal))
	}
	fmt.Fprintf(out, "A selected container's start pays the create row plus runc's own create; every other runtime call pays the second row's difference to the first.\n")
}
