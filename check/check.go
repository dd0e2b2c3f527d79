// SPDX-License-Identifier: Apache-2.0

// Package check tells whether this node can fence containers with a given
// config, and if not, why: the kernel's netfilter pieces, the iptables
// tools, nf_log_all_netns, the config, the state directory, the
// registrations a runtime would follow, and a live self-test that fences a
// throwaway network namespace of its own. It changes nothing outside that
// namespace and a temporary state directory.
package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/bypass-hook/bypass-hook/config"
)

// Status is the verdict of one item.
type Status string

const (
	OK   Status = "ok"
	Info Status = "info" // worth knowing, neither good nor bad
	Warn Status = "warn" // fencing works, something around it does not
	Fail Status = "fail" // this node cannot fence with this config
)

// Item is one finding.
type Item struct {
	Section string `json:"section"` // kernel, tools, config, state, registration, self-test
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Detail  string `json:"detail"`
	Fix     string `json:"fix,omitempty"` // what to do about a warn or fail
}

// Report is what Run found.
type Report struct {
	// CanFence is true when nothing failed: the node can fence with this
	// config.
	CanFence bool   `json:"canFence"`
	Config   string `json:"config"`  // the file read; "" for the built-in defaults
	Backend  string `json:"backend"` // what the config's backend resolves to here
	Items    []Item `json:"checks"`
	// SelfTest is the live test's measurements; nil when it did not run.
	SelfTest *SelfTest `json:"selfTest,omitempty"`
}

// Options say what to check.
type Options struct {
	// Config is the config to check; nil when ConfigErr says why it could
	// not be loaded.
	Config     *config.Config
	ConfigPath string
	ConfigErr  error
	// SelfTest runs the live test (it needs root).
	SelfTest bool
	// Paths are where registrations and kernel facts are looked for; the
	// zero value means this host's (see DefaultPaths).
	Paths Paths
}

// Run checks the node and returns the report.
func Run(o Options) *Report {
	if o.Paths.Proc == "" {
		o.Paths = DefaultPaths()
	}
	r := &Report{Config: o.ConfigPath}
	add := func(items ...Item) { r.Items = append(r.Items, items...) }

	cfg := o.Config
	add(configItems(cfg, o.ConfigErr)...)
	kern := probeKernel(o.Paths)
	backend := ""
	if cfg != nil {
		var item Item
		backend, item = resolveBackend(cfg.Backend, kern)
		add(item)
	}
	r.Backend = backend
	tools := toolItems(kern, backend) // first: the iptables mode decides the pieces it needs
	add(kern.items(cfg, backend)...)
	add(logSysctlItem(o.Paths, cfg))
	add(vsockItem(o.Paths))
	add(tools...)
	if cfg != nil {
		add(stateDirItem(cfg.StateDir))
		add(fenceItems(cfg.StateDir)...)
		add(driftItems(cfg)...)
	}
	regs := registrationItems(o.Paths, cfg)
	add(regs...)
	add(engineItems(o.Paths, regs)...)
	if o.SelfTest && cfg != nil {
		st, items := runSelfTest(cfg, backend)
		r.SelfTest = st
		add(items...)
	} else if cfg != nil {
		add(Item{Section: "self-test", Name: "live fence", Status: Info, Detail: "not run (--no-self-test)"})
	}
	r.CanFence = true
	for _, it := range r.Items {
		if it.Status == Fail {
			r.CanFence = false
		}
	}
	return r
}

// WriteTable writes the report for people: one line per item, a fix under
// each warning and failure, the verdict last.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := ""
	for _, it := range r.Items {
		if it.Section != section {
			section = it.Section
			fmt.Fprintf(tw, "%s\t\t\n", strings.ToUpper(section))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", it.Name, strings.ToUpper(string(it.Status)), it.Detail)
		if it.Fix != "" {
			fmt.Fprintf(tw, "\t\t-> %s\n", it.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var fails, warns int
	for _, it := range r.Items {
		switch it.Status {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	cfg := r.Config
	if cfg == "" {
		cfg = "the built-in defaults"
	}
	if r.CanFence {
		_, err := fmt.Fprintf(w, "\nVERDICT: this node can fence with %s (%s backend); %d warning(s).\n", cfg, r.Backend, warns)
		return err
	}
	_, err := fmt.Fprintf(w, "\nVERDICT: this node CANNOT fence with %s: %d failure(s), %d warning(s); see FAIL above.\n", cfg, fails, warns)
	return err
}

// WriteJSON writes the report for scripts.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
