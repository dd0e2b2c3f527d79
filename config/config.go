// SPDX-License-Identifier: Apache-2.0

// Package config reads, defaults and validates the bypass-hook config file
// and decides, from a container's annotations, which policy applies to it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/agnivade/levenshtein"
	"go.yaml.in/yaml/v4"

	"github.com/bypass-hook/bypass-hook/internal/fserr"
	"github.com/bypass-hook/bypass-hook/internal/safefile"
)

// DefaultPath is the config file used when neither --config nor
// BYPASS_HOOK_CONFIG names one. It may be absent.
const DefaultPath = "/etc/bypass-hook/config.yaml"

// EnvVar names the environment variable that points at the config file.
const EnvVar = "BYPASS_HOOK_CONFIG"

// MaxLogPrefix is what the xt LOG target keeps of a prefix; the kernel cuts
// longer prefixes silently, so we refuse them instead.
const MaxLogPrefix = 29

// idSuffixLen is what the hook appends to the prefix stem: ":" + 12 characters
// of the container id + ": ".
const idSuffixLen = 1 + 12 + 2

// Values of the enumerated keys.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"

	SelectAll       = "all"
	SelectAnnotated = "annotated"

	FailClosed = "closed"
	FailOpen   = "open"

	OtherReject = "reject"
	OtherAccept = "accept"

	// BackendAuto is nftables where the kernel has nf_tables, else
	// iptables; the record of a namespace says which one fenced it.
	BackendAuto     = "auto"
	BackendIptables = "iptables"
	BackendNftables = "nftables"

	LogKernel = "kernel"
	LogNflog  = "nflog"
)

// Config is the config file, as written by the operator.
type Config struct {
	Proxies          []string `yaml:"proxies"`
	Allow            []Allow  `yaml:"allow"`
	DNS              []string `yaml:"dns"`
	AllowUids        []int64  `yaml:"allowUids"`
	Mode             string   `yaml:"mode"`
	Selection        string   `yaml:"selection"`
	Failure          string   `yaml:"failure"`
	OtherProtocols   string   `yaml:"otherProtocols"`
	Strict           bool     `yaml:"strict"`
	Backend          string   `yaml:"backend"`
	Log              Log      `yaml:"log"`
	HookLog          string   `yaml:"hookLog"`
	StateDir         string   `yaml:"stateDir"`
	NRI              NRI      `yaml:"nri"`
	TrustAnnotations bool     `yaml:"trustAnnotations"`

	// Path is the file this config was read from ("" for built-in defaults).
	Path string `yaml:"-"`

	// The parsed forms of the address keys, filled by Validate.
	proxies []netip.AddrPort
	allow   []AllowRule
	dns     []netip.Addr
}

// Allow is one further direct destination.
type Allow struct {
	CIDR     string `yaml:"cidr"`
	Ports    []int  `yaml:"ports"`
	Protocol string `yaml:"protocol"`
}

// Log configures the log rules.
type Log struct {
	Target   string `yaml:"target"`
	Group    int    `yaml:"group"`
	Prefix   string `yaml:"prefix"`
	Rate     string `yaml:"rate"`
	Burst    int    `yaml:"burst"`
	Required bool   `yaml:"required"`
}

// NRI configures the containerd NRI plugin.
type NRI struct {
	ExcludeNamespaces []string `yaml:"excludeNamespaces"`
}

// Error is a config error: it names the file and the line of a YAML
// error, or the key and the value at fault. The hook exits 2 on it and
// changes nothing.
type Error struct {
	File  string // the config file; "" when the config came from elsewhere
	Line  int    // 1-based line of a YAML error; 0 when it is not about one line
	Key   string
	Value string
	Msg   string

	// missing: File does not exist. Said without the system's "no such
	// file or directory", which podman takes for a missing hook binary.
	missing bool
}

func (e *Error) Error() string {
	if e.missing {
		return fmt.Sprintf("config file %s does not exist (a file named by --config or $%s must exist; only the default %s may be absent)", e.File, EnvVar, DefaultPath)
	}
	where := "config"
	if e.File != "" {
		where += " " + e.File
	}
	if e.Line > 0 {
		where += fmt.Sprintf(", line %d", e.Line)
	}
	switch {
	case e.Key == "":
		return fmt.Sprintf("%s: %s", where, e.Msg)
	case e.Value == "":
		return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %q %s", where, e.Key, e.Value, e.Msg)
}

// Is makes a missing file's error os.ErrNotExist, as its cause was.
func (e *Error) Is(target error) bool { return e.missing && target == os.ErrNotExist }

func errKey(key, value, format string, args ...any) error {
	return &Error{Key: key, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// Default returns the built-in defaults. With no proxies, nothing is fenced.
func Default() *Config {
	return &Config{
		Mode:           ModeEnforce,
		Selection:      SelectAll,
		Failure:        FailClosed,
		OtherProtocols: OtherReject,
		Backend:        BackendAuto,
		Log: Log{
			Target: LogKernel,
			Group:  7231,
			Prefix: "bypass",
			Rate:   "5/second",
			Burst:  10,
		},
		HookLog:  "/var/log/bypass-hook.log",
		StateDir: "/run/bypass-hook",
		NRI:      NRI{ExcludeNamespaces: []string{"kube-system"}},
	}
}

// Source is where a config is read from: a file named explicitly (the
// --config flag, then $BYPASS_HOOK_CONFIG), which must exist, or the default
// path, which may be absent and then stands for the defaults.
type Source struct {
	Path     string
	Explicit bool
}

// Locate picks the config file: the flag, then the environment variable,
// then DefaultPath.
func Locate(flagValue string) Source {
	if flagValue != "" {
		return Source{flagValue, true}
	}
	if env := os.Getenv(EnvVar); env != "" {
		return Source{env, true}
	}
	return Source{DefaultPath, false}
}

// Load reads and validates the config file chosen by Locate.
func Load(flagValue string) (*Config, error) {
	return Locate(flagValue).Load()
}

// File is the file cfg was read from, or the default path that a config of
// defaults stands for (it may appear later).
func File(cfg *Config) string {
	if cfg.Path != "" {
		return cfg.Path
	}
	return DefaultPath
}

// Load reads and validates the file of s. A file named explicitly must
// exist; the default one may be absent, and then the defaults apply.
func (s Source) Load() (*Config, error) {
	path := s.Path
	// A ConfigMap's file is a symbolic link: followed.
	data, err := safefile.Read(path, safefile.MaxConfig, safefile.FollowLink)
	if errors.Is(err, os.ErrNotExist) && !s.Explicit {
		cfg := Default()
		return cfg, cfg.Validate()
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, &Error{File: path, Msg: "does not exist", missing: true}
	}
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot be read: %v", fserr.Cause(err))}
	}
	cfg, err := Parse(data)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	return cfg, nil
}

// Parse decodes a config file over the defaults and validates it. Unknown keys
// are errors: a misspelt key would otherwise silently weaken the fence.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}
	// A second document would be ignored silently; refuse it.
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{Msg: "holds more than one YAML document (a line \"---\")"}
	}
	return cfg, cfg.Validate()
}

// The regular expressions are compiled on first use, not at package init:
// every hook process pays for init, and most never need them.
var (
	unknownFieldRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^field (\S+) not found in type (\S+)$`) })
	constructRe    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^cannot construct !!\\w+ `(.*)` into (\\S+)$") })
)

// yamlError turns the decoder's error into one line that names where the
// fault is: the line (and column) of the first fault, unknown keys as such.
func yamlError(err error) error {
	var one *yaml.LoadError
	var many *yaml.LoadErrors
	switch {
	case errors.As(err, &many) && len(many.Errors) > 0:
		var msgs []string
		for i, e := range many.Errors {
			msg := describeLoadError(e)
			if i > 0 {
				msg = fmt.Sprintf("line %d: %s", e.Mark.Line, msg)
			}
			msgs = append(msgs, msg)
		}
		return &Error{Line: many.Errors[0].Mark.Line, Msg: strings.Join(msgs, "; ")}
	case errors.As(err, &one):
		msg := describeLoadError(one)
		if one.ContextMsg != "" && one.ContextMark.Line > 0 && one.ContextMark.Line != one.Mark.Line {
			msg += fmt.Sprintf(" (%s from line %d)", one.ContextMsg, one.ContextMark.Line)
		}
		return &Error{Line: one.Mark.Line, Msg: msg}
	}
	return &Error{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
}

// describeLoadError says what is wrong in the config's terms.
func describeLoadError(e *yaml.LoadError) string {
	if m := unknownFieldRe().FindStringSubmatch(e.Message); m != nil {
		if near := nearestKey(m[1], m[2]); near != "" {
			return fmt.Sprintf("unknown key %q (did you mean %q?)", m[1], near)
		}
		return fmt.Sprintf("unknown key %q", m[1])
	}
	if m := constructRe().FindStringSubmatch(e.Message); m != nil {
		kind := map[string]string{"int": "a number", "int64": "a number", "bool": "true or false", "string": "a string"}[m[2]]
		if kind == "" {
			kind = "a list"
			if !strings.HasPrefix(m[2], "[]") {
				kind = "a mapping of keys"
				if keys := mappingKeys(m[2]); keys != "" {
					kind += " (" + keys + ")"
				}
			}
		}
		msg := fmt.Sprintf("%q must be %s", m[1], kind)
		if m[2] == "config.Allow" {
			msg += `, as "- cidr: 198.51.100.0/24"` + noHostNames
		}
		return msg
	}
	return e.Message
}

// Why addresses are asked for where a name was given.
const (
	noHostNamesWhy = "host names are not supported: the rules match addresses, and a name's addresses can change after the rules are written"
	noHostNames    = " (" + noHostNamesWhy + "; reach names through the proxy)"
)

// keysOf lists the keys of the config's type that the decoder names
// (config.Allow), none for another.
func keysOf(typeName string) []string {
	t, ok := map[string]reflect.Type{
		"config.Config": reflect.TypeFor[Config](),
		"config.Allow":  reflect.TypeFor[Allow](),
		"config.Log":    reflect.TypeFor[Log](),
		"config.NRI":    reflect.TypeFor[NRI](),
	}[typeName]
	if !ok {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// mappingKeys is keysOf as a list for a message.
func mappingKeys(typeName string) string { return strings.Join(keysOf(typeName), ", ") }

// nearestKey is the key of the type that an unknown key most likely
// misspells, or "": case aside, at most two letters off and no more than
// half the key (not "log" for "foo"), or the key's start but its last
// letter ("proxies" for "proxy").
func nearestKey(key, typeName string) string {
	key = strings.ToLower(key)
	best, bestDist := "", min(2, len(key)/2)+1
	for _, k := range keysOf(typeName) {
		d := levenshtein.ComputeDistance(key, strings.ToLower(k))
		if len(key) >= 4 && strings.HasPrefix(strings.ToLower(k), key[:len(key)-1]) {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// isHostName reports whether s looks like a DNS name rather than an
// address: letters, and nothing an address or CIDR would hold instead.
func isHostName(s string) bool {
	_, err := netip.ParseAddr(s)
	return err != nil && strings.ContainsAny(strings.ToLower(s), "ghijklmnopqrstuvwxyz") && !strings.ContainsAny(s, "/:[]% ")
}

var (
	prefixRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]+$`) })
	rateRe   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([1-9][0-9]{0,5})/(second|minute|hour|day)$`) })
)

// Validate checks every key and fills the parsed forms. It returns the first
// error, which names the key and the value.
func (c *Config) Validate() error {
	if err := c.validateChoices(); err != nil {
		return err
	}
	if err := c.parseAddresses(); err != nil {
		return err
	}
	for i, u := range c.AllowUids {
		if u < 0 || u > 4294967294 {
			return errKey(fmt.Sprintf("allowUids[%d]", i), strconv.FormatInt(u, 10), "is not a uid (0-4294967294)")
		}
	}
	if err := c.validateLog(); err != nil {
		return err
	}
	if c.HookLog != "" && !filepath.IsAbs(c.HookLog) {
		return errKey("hookLog", c.HookLog, "must be an absolute path (the runtime runs the hook in an unknown directory)")
	}
	if !filepath.IsAbs(c.StateDir) {
		return errKey("stateDir", c.StateDir, "must be an absolute path")
	}
	for i, ns := range c.NRI.ExcludeNamespaces {
		if ns == "" {
			return errKey(fmt.Sprintf("nri.excludeNamespaces[%d]", i), ns, "is empty")
		}
	}
	return nil
}

// validateChoices checks the keys that take one of a few words.
func (c *Config) validateChoices() error {
	oneOf := func(key, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return errKey(key, v, "is not one of %s", strings.Join(allowed, ", "))
	}
	for _, e := range []error{
		oneOf("mode", c.Mode, ModeEnforce, ModeAudit),
		oneOf("selection", c.Selection, SelectAll, SelectAnnotated),
		oneOf("failure", c.Failure, FailClosed, FailOpen),
		oneOf("otherProtocols", c.OtherProtocols, OtherReject, OtherAccept),
		oneOf("backend", c.Backend, BackendAuto, BackendNftables, BackendIptables),
		oneOf("log.target", c.Log.Target, LogKernel, LogNflog),
	} {
		if e != nil {
			return e
		}
	}
	return nil
}

// parseAddresses parses proxies, allow and dns into the forms the rules
// are built from.
func (c *Config) parseAddresses() error {
	c.proxies = nil
	for i, p := range c.Proxies {
		ap, err := ParseProxy(p)
		if err != nil {
			return errKey(fmt.Sprintf("proxies[%d]", i), p, "%v", err)
		}
		c.proxies = append(c.proxies, ap)
	}

	c.allow = nil
	for i, a := range c.Allow {
		r, err := a.parse()
		if err != nil {
			err.Key = fmt.Sprintf("allow[%d].%s", i, err.Key)
			return err
		}
		c.allow = append(c.allow, r)
	}

	c.dns = nil
	for i, d := range c.DNS {
		addr, err := netip.ParseAddr(d)
		if err != nil || addr.Zone() != "" {
			return errKey(fmt.Sprintf("dns[%d]", i), d, "is not an IP address")
		}
		c.dns = append(c.dns, addr.Unmap())
	}
	return nil
}

// validateLog checks the log keys against what the kernel's LOG target and
// limit match accept.
func (c *Config) validateLog() error {
	if c.Log.Group < 0 || c.Log.Group > 65535 {
		return errKey("log.group", strconv.Itoa(c.Log.Group), "is out of range 0-65535")
	}
	if !prefixRe().MatchString(c.Log.Prefix) {
		return errKey("log.prefix", c.Log.Prefix, "must be letters, digits, '.', '_' or '-'")
	}
	if n := len(c.Log.Prefix) + idSuffixLen; n > MaxLogPrefix {
		return errKey("log.prefix", c.Log.Prefix,
			"is too long: with \":<12 of the container id>: \" it takes %d characters and the LOG target keeps %d; use at most %d",
			n, MaxLogPrefix, MaxLogPrefix-idSuffixLen)
	}
	m := rateRe().FindStringSubmatch(c.Log.Rate)
	if m == nil {
		return errKey("log.rate", c.Log.Rate, "must be N/second, N/minute, N/hour or N/day")
	}
	// The kernel's limit match keeps the interval between packets in units
	// of 1/10000 s: a faster rate would round to 0 and iptables refuses it.
	n, _ := strconv.Atoi(m[1])
	if max := map[string]int{"second": 10000, "minute": 600000}[m[2]]; max > 0 && n > max {
		return errKey("log.rate", c.Log.Rate, "is faster than the kernel's limit match can count (at most 10000/second)")
	}
	if c.Log.Burst < 1 || c.Log.Burst > 10000 {
		return errKey("log.burst", strconv.Itoa(c.Log.Burst), "is out of range 1-10000")
	}
	return nil
}

// ParseProxy parses "IP:port" or "[IPv6]:port".
func ParseProxy(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
	if err != nil {
		if _, perr := netip.ParseAddr(s); perr == nil {
			return netip.AddrPort{}, errors.New("has no port: write IP:port, or [IPv6]:port")
		}
		if host, _, herr := net.SplitHostPort(strings.TrimSpace(s)); herr == nil && isHostName(host) {
			return netip.AddrPort{}, errors.New("is not IP:port or [IPv6]:port (" + noHostNamesWhy + ")")
		}
		return netip.AddrPort{}, errors.New("is not IP:port or [IPv6]:port")
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("has port 0")
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, errors.New("has an IPv6 zone, which a rule cannot match")
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, errors.New("is the unspecified address")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// AllowRule is a parsed allow entry.
type AllowRule struct {
	Prefix   netip.Prefix `json:"cidr"`
	Ports    []uint16     `json:"ports,omitempty"`
	Protocol string       `json:"protocol"` // tcp, udp or any
}

func (a Allow) parse() (AllowRule, *Error) {
	var r AllowRule
	pfx, err := netip.ParsePrefix(a.CIDR)
	if err != nil {
		addr, aerr := netip.ParseAddr(a.CIDR)
		if isHostName(a.CIDR) {
			return r, &Error{Key: "cidr", Value: a.CIDR, Msg: "is not an address or CIDR" + noHostNames}
		}
		if aerr != nil || addr.Zone() != "" {
			return r, &Error{Key: "cidr", Value: a.CIDR, Msg: "is not an address or CIDR"}
		}
		pfx = netip.PrefixFrom(addr, addr.BitLen())
	}
	if pfx.Addr().Is4In6() {
		return r, &Error{Key: "cidr", Value: a.CIDR, Msg: "is an IPv4-mapped IPv6 prefix; write the IPv4 prefix"}
	}
	if pfx.Masked() != pfx {
		return r, &Error{Key: "cidr", Value: a.CIDR, Msg: fmt.Sprintf("has host bits set; did you mean %s?", pfx.Masked())}
	}
	r.Prefix = pfx
	for _, p := range a.Ports {
		if p < 1 || p > 65535 {
			return r, &Error{Key: "ports", Value: strconv.Itoa(p), Msg: "is out of range 1-65535"}
		}
		r.Ports = append(r.Ports, uint16(p))
	}
	switch a.Protocol {
	case "", "any":
		r.Protocol = "any"
	case "tcp", "udp":
		r.Protocol = a.Protocol
	default:
		return r, &Error{Key: "protocol", Value: a.Protocol, Msg: "is not one of tcp, udp, any"}
	}
	return r, nil
}

// ProxyAddrs returns the parsed proxies. Validate must have succeeded.
func (c *Config) ProxyAddrs() []netip.AddrPort { return c.proxies }
