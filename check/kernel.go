// SPDX-License-Identifier: Apache-2.0

package check

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// Paths are where the check looks; tests point them at a directory of
// their own.
type Paths struct {
	Proc string // /proc
	Sys  string // /sys
	// KernelConfigs are the kernel's build configs, first found wins.
	KernelConfigs []string
	ModulesDir    string // /lib/modules/RELEASE
	HooksDirs     []string
	// Engines are the installed podman and CRI-O and the hooks directories
	// each reads; nil: not judged (a hooks.d file anywhere counts).
	Engines      []install.Engine
	CDIDirs      []string
	NRISocket    string
	NRIPluginDir string // pre-registered plugins containerd starts itself
	NRIConfDir   string
	// EngineVersions are the installed Docker and containerd, whose
	// versions decide which registrations they read; nil: not judged.
	EngineVersions []install.EngineVersion
	// DaemonJSON and ContainerdConfig are where the runtime wrapper's
	// registrations are looked for.
	DaemonJSON, ContainerdConfig string
}

// DefaultPaths are this host's.
func DefaultPaths() Paths {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	// A broken engine config leaves Engines nil: the registrations are
	// then listed without judging who reads them.
	engines, _ := install.InstalledEngines("")
	hooksDirs := []string{"/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"}
	for _, e := range engines {
		for _, d := range e.Dirs {
			if !slices.Contains(hooksDirs, d) {
				hooksDirs = append(hooksDirs, d)
			}
		}
	}
	return Paths{
		Proc:          "/proc",
		Sys:           "/sys",
		KernelConfigs: []string{"/proc/config.gz", "/boot/config-" + release},
		ModulesDir:    "/lib/modules/" + release,
		HooksDirs:     hooksDirs,
		Engines:       engines,
		CDIDirs:       []string{"/etc/cdi", "/var/run/cdi"},
		NRISocket:     "/var/run/nri/nri.sock",
		NRIPluginDir:  "/opt/nri/plugins",
		NRIConfDir:    "/etc/nri/conf.d",

		EngineVersions:   install.InstalledEngineVersions(),
		DaemonJSON:       install.DaemonJSON,
		ContainerdConfig: install.ContainerdConfig,
	}
}

// role is what a kernel piece is for, which decides how bad its absence is.
type role int

const (
	roleRequired  role = iota // the refusals need it
	roleConntrack             // without it, only new TCP connections are refused
	roleLog                   // without it, the fence refuses but does not log
	roleUids                  // allowUids needs it
)

// piece is one part of the kernel the rules use. It is found without
// loading anything: registered now (/proc/net/ip_tables_*, nf_log), built
// in or a module (the kernel's config, /sys/module, modules.dep).
type piece struct {
	name    string
	what    string   // what uses it, for the table
	configs []string // CONFIG_ symbols; any one will do (names changed over time)
	modules []string // module names, without .ko
	xt      string   // name in /proc/net/ip{,6}_tables_{matches,targets}
	xtKind  string   // "matches" or "targets"
	logger  bool     // registers a kernel logger (/proc/net/netfilter/nf_log)
	role    role
	// backends and log targets the piece matters for; empty means all.
	backends []string
	targets  []string
	// iptablesMode limits a piece, under the iptables backend, to one mode
	// of the tools ("nf_tables", "legacy"); "" for both.
	iptablesMode string
}

var pieces = []piece{
	{name: "nf_tables", what: "nftables backend; iptables in nf_tables mode", configs: []string{"CONFIG_NF_TABLES"}, modules: []string{"nf_tables"}, iptablesMode: "nf_tables"},
	{name: "nft_compat", what: "xt matches under iptables-nft", configs: []string{"CONFIG_NFT_COMPAT"}, modules: []string{"nft_compat"}, backends: []string{config.BackendIptables}, iptablesMode: "nf_tables"},
	{name: "iptable_filter", what: "the filter table of legacy iptables", configs: []string{"CONFIG_IP_NF_FILTER"}, modules: []string{"iptable_filter"}, backends: []string{config.BackendIptables}, iptablesMode: "legacy"},
	{name: "ip6table_filter", what: "the filter table of legacy ip6tables", configs: []string{"CONFIG_IP6_NF_FILTER"}, modules: []string{"ip6table_filter"}, backends: []string{config.BackendIptables}, iptablesMode: "legacy"},
	{name: "REJECT (IPv4)", what: "TCP reset and ICMP unreachable", configs: []string{"CONFIG_IP_NF_TARGET_REJECT"}, modules: []string{"ipt_REJECT"}, xt: "REJECT", xtKind: "targets", backends: []string{config.BackendIptables}},
	{name: "REJECT (IPv6)", what: "TCP reset and ICMPv6 unreachable", configs: []string{"CONFIG_IP6_NF_TARGET_REJECT"}, modules: []string{"ip6t_REJECT"}, xt: "REJECT", xtKind: "targets6", backends: []string{config.BackendIptables}},
	{name: "nft reject", what: "TCP reset and ICMP unreachable", configs: []string{"CONFIG_NFT_REJECT_INET", "CONFIG_NFT_REJECT"}, modules: []string{"nft_reject_inet"}, backends: []string{config.BackendNftables}},
	{name: "conntrack", what: "letting replies and established traffic through", configs: []string{"CONFIG_NF_CONNTRACK"}, modules: []string{"nf_conntrack"}, role: roleConntrack},
	{name: "conntrack match", what: "-m conntrack", configs: []string{"CONFIG_NETFILTER_XT_MATCH_CONNTRACK"}, modules: []string{"xt_conntrack"}, xt: "conntrack", xtKind: "matches", role: roleConntrack, backends: []string{config.BackendIptables}},
	{name: "nft ct", what: "ct state", configs: []string{"CONFIG_NFT_CT"}, modules: []string{"nft_ct"}, role: roleConntrack, backends: []string{config.BackendNftables}},
	{name: "limit match", what: "the log rate limit", configs: []string{"CONFIG_NETFILTER_XT_MATCH_LIMIT"}, modules: []string{"xt_limit"}, xt: "limit", xtKind: "matches", role: roleLog, backends: []string{config.BackendIptables}},
	{name: "nft limit", what: "the log rate limit", configs: []string{"CONFIG_NFT_LIMIT"}, modules: []string{"nft_limit"}, role: roleLog, backends: []string{config.BackendNftables}},
	{name: "LOG target", what: "log.target kernel", configs: []string{"CONFIG_NETFILTER_XT_TARGET_LOG"}, modules: []string{"xt_LOG"}, xt: "LOG", xtKind: "targets", role: roleLog, backends: []string{config.BackendIptables}, targets: []string{config.LogKernel}},
	{name: "nft log", what: "logging", configs: []string{"CONFIG_NFT_LOG"}, modules: []string{"nft_log"}, role: roleLog, backends: []string{config.BackendNftables}},
	{name: "kernel logger", what: "LOG lines in the kernel log", configs: []string{"CONFIG_NF_LOG_SYSLOG", "CONFIG_NF_LOG_IPV4"}, modules: []string{"nf_log_syslog", "nf_log_ipv4"}, logger: true, role: roleLog, targets: []string{config.LogKernel}},
	{name: "NFLOG target", what: "log.target nflog", configs: []string{"CONFIG_NETFILTER_XT_TARGET_NFLOG"}, modules: []string{"xt_NFLOG"}, xt: "NFLOG", xtKind: "targets", role: roleLog, backends: []string{config.BackendIptables}, targets: []string{config.LogNflog}},
	{name: "nfnetlink_log", what: "log.target nflog", configs: []string{"CONFIG_NETFILTER_NETLINK_LOG"}, modules: []string{"nfnetlink_log"}, role: roleLog, targets: []string{config.LogNflog}},
	{name: "owner match", what: "allowUids", configs: []string{"CONFIG_NETFILTER_XT_MATCH_OWNER"}, modules: []string{"xt_owner"}, xt: "owner", xtKind: "matches", role: roleUids, backends: []string{config.BackendIptables}},
}

// presence is where a piece was found.
type presence string

const (
	registered presence = "registered"    // in use or built in: listed by the kernel now
	builtin    presence = "built in"      // compiled into the kernel
	loaded     presence = "module loaded" // a module, loaded
	loadable   presence = "module"        // a module, loaded on first use
	missing    presence = "missing"       // not in this kernel
	unknown    presence = "unknown"       // no config or module list to tell
)

// kernel is what the probes found.
type kernel struct {
	found       map[string]presence // by piece name
	source      string              // where the kernel config came from, "" if none
	iptablesMod string              // mode of the host's iptables, filled by toolItems' probe
}

// probeKernel finds each piece without loading anything.
func probeKernel(p Paths) *kernel {
	pr := readProbes(p)
	k := &kernel{found: map[string]presence{}, source: pr.source}
	for _, pc := range pieces {
		k.found[pc.name] = pr.find(pc)
	}
	return k
}

// probes are what the kernel and its module lists tell, read once for
// all the pieces.
type probes struct {
	sys        string                     // /sys, where loaded modules are
	kconfig    map[string]string          // the kernel's build config, CONFIG_ symbol to y or m
	source     string                     // where kconfig came from, "" if none
	xt         map[string]map[string]bool // by xtKind, the xt names registered now
	loggers    map[string]bool            // the lines of nf_log
	modDep     map[string]bool            // modules that can be loaded
	modBuiltin map[string]bool            // modules built in
}

func readProbes(p Paths) probes {
	pr := probes{sys: p.Sys, kconfig: map[string]string{}, xt: map[string]map[string]bool{}}
	for _, path := range p.KernelConfigs {
		if m, err := readKernelConfig(path); err == nil {
			pr.kconfig, pr.source = m, path
			break
		}
	}
	for kind, file := range map[string]string{
		"matches": "net/ip_tables_matches", "targets": "net/ip_tables_targets",
		"matches6": "net/ip6_tables_matches", "targets6": "net/ip6_tables_targets",
	} {
		pr.xt[kind] = readLines(filepath.Join(p.Proc, file))
	}
	pr.loggers = readLines(filepath.Join(p.Proc, "net/netfilter/nf_log"))
	pr.modDep = moduleNames(filepath.Join(p.ModulesDir, "modules.dep"))
	pr.modBuiltin = moduleNames(filepath.Join(p.ModulesDir, "modules.builtin"))
	return pr
}

// find is where the piece is, asking the most certain source first:
// registered now, then the kernel's config, then the module lists.
func (pr probes) find(pc piece) presence {
	if pc.xt != "" && pr.xt[pc.xtKind][pc.xt] {
		return registered
	}
	if pc.logger {
		for line := range pr.loggers {
			for _, m := range pc.modules {
				if strings.Contains(line, m) {
					return registered
				}
			}
		}
	}
	for _, sym := range pc.configs {
		switch pr.kconfig[sym] {
		case "y":
			return builtin
		case "m":
			for _, m := range pc.modules {
				if dirExists(filepath.Join(pr.sys, "module", m)) {
					return loaded
				}
			}
			return loadable
		}
	}
	for _, m := range pc.modules {
		switch {
		case pr.modBuiltin[m]:
			return builtin
		case dirExists(filepath.Join(pr.sys, "module", m)):
			return loaded
		case pr.modDep[m]:
			return loadable
		}
	}
	if pr.source != "" || len(pr.modDep) > 0 {
		return missing
	}
	return unknown
}

// has reports whether the kernel has the piece, as far as the probes tell.
func (k *kernel) has(name string) bool {
	p := k.found[name]
	return p != missing && p != unknown
}

// items reports the pieces that matter for the backend and the config.
func (k *kernel) items(cfg *config.Config, backend string) []Item {
	var items []Item
	if k.source == "" {
		items = append(items, Item{Section: "kernel", Name: "kernel config", Status: Info,
			Detail: "neither /proc/config.gz nor /boot/config-RELEASE is readable: pieces not registered yet show as unknown; the self-test tells"})
	}
	for _, pc := range pieces {
		if backend != "" && len(pc.backends) > 0 && !contains(pc.backends, backend) {
			continue
		}
		if cfg != nil && len(pc.targets) > 0 && !contains(pc.targets, cfg.Log.Target) {
			continue
		}
		if pc.iptablesMode != "" && backend == config.BackendIptables && k.iptablesMod != "" && k.iptablesMod != pc.iptablesMode {
			continue
		}
		p := k.found[pc.name]
		it := Item{Section: "kernel", Name: pc.name, Status: OK, Detail: string(p) + ": " + pc.what}
		if p == unknown {
			it.Status = Info
		}
		if p == missing {
			it.Status, it.Fix = k.missingStatus(pc, cfg)
		}
		items = append(items, it)
	}
	return items
}

func (k *kernel) missingStatus(pc piece, cfg *config.Config) (Status, string) {
	rebuild := "a kernel built with " + strings.Join(pc.configs, " or ")
	switch pc.role {
	case roleConntrack:
		return Warn, "without it only new TCP connections are refused (UDP and other protocols pass); use " + rebuild
	case roleLog:
		if cfg != nil && (cfg.Log.Required || cfg.Mode == config.ModeAudit) {
			return Fail, "log.required (or audit mode) needs it: use " + rebuild
		}
		return Warn, "the fence refuses but does not log; use " + rebuild
	case roleUids:
		if cfg != nil && len(cfg.AllowUids) > 0 {
			return Fail, "allowUids needs it: use " + rebuild
		}
		return Info, ""
	}
	return Fail, "the refusals need it: use " + rebuild
}

// readKernelConfig reads a kernel build config, gzipped or not.
func readKernelConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		r = gz
	}
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			m[k] = v
		}
	}
	return m, sc.Err()
}

// moduleNames reads modules.dep or modules.builtin: a module's name is its
// file's, without the directory and the .ko(.xz|.zst|.gz) suffix, with "-"
// as "_" the way the kernel names it.
func moduleNames(path string) map[string]bool {
	names := map[string]bool{}
	for line := range readLines(path) {
		file, _, _ := strings.Cut(line, ":")
		base := filepath.Base(strings.TrimSpace(file))
		base, _, _ = strings.Cut(base, ".ko")
		names[strings.ReplaceAll(base, "-", "_")] = true
	}
	return names
}

func readLines(path string) map[string]bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out[l] = true
		}
	}
	return out
}

func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
