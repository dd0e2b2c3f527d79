// SPDX-License-Identifier: Apache-2.0

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The annotations a container may carry.
const (
	AnnEnabled = "bypass-hook.io/enabled"
	AnnMode    = "bypass-hook.io/mode"
	AnnProxies = "bypass-hook.io/proxies"
)

// AnnotationPrefix is what all of our annotations start with.
const AnnotationPrefix = "bypass-hook.io/"

// Policy is what one container is fenced with: the keys that shape the rules,
// after the container's annotations have narrowed them. Two containers in one
// network namespace must have the same policy.
type Policy struct {
	Mode           string           `json:"mode"`
	Proxies        []netip.AddrPort `json:"proxies"`
	Allow          []AllowRule      `json:"allow,omitempty"`
	DNS            []netip.Addr     `json:"dns,omitempty"`
	AllowUids      []uint32         `json:"allowUids,omitempty"`
	OtherProtocols string           `json:"otherProtocols"`
	Log            LogPolicy        `json:"log"`
}

// LogPolicy is the log part of a Policy.
type LogPolicy struct {
	Target   string `json:"target"`
	Group    uint16 `json:"group"`
	Prefix   string `json:"prefix"`
	Rate     string `json:"rate"`
	Burst    int    `json:"burst"`
	Required bool   `json:"required"`
}

// Digest identifies a policy; equal policies have equal digests.
func (p Policy) Digest() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // a Policy holds only marshalable values
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Decision is what the config and the annotations make of one container.
type Decision struct {
	Fence  bool
	Reason string // why it is not fenced, for the hook log
	Policy Policy
	// Narrowing is what the container's annotations made of the config's
	// policy (see Narrowing).
	Narrowing Narrowing
}

// AnnotationError refuses a container whose annotations would widen the
// policy, or are malformed. It is never bypassed by failure: open, since
// whoever writes annotations may be the tenant the fence is for.
type AnnotationError struct {
	Annotation string
	Value      string
	Msg        string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s=%q: %s", e.Annotation, e.Value, e.Msg)
}

const trustHint = "; set trustAnnotations: true in the config only where operators alone write annotations"

// Decide applies the selection and the annotation policy to one container.
func (c *Config) Decide(annotations map[string]string) (Decision, error) {
	annotations, err := ourAnnotations(annotations)
	if err != nil {
		return Decision{}, err
	}
	enabled, hasEnabled := annotations[AnnEnabled]
	if hasEnabled && enabled != "true" && enabled != "false" {
		return Decision{}, &AnnotationError{AnnEnabled, enabled, `must be "true" or "false"`}
	}
	switch {
	case c.Selection == SelectAll && enabled == "false":
		if !c.TrustAnnotations {
			return Decision{}, &AnnotationError{AnnEnabled, enabled,
				"would exempt the container from the fence that selection: all requires" + trustHint}
		}
		return Decision{Reason: "disabled by annotation " + AnnEnabled + "=false (trusted)"}, nil
	case c.Selection == SelectAnnotated && enabled != "true":
		return Decision{Reason: "selection: annotated and the container has no " + AnnEnabled + "=true"}, nil
	}

	p, n := c.basePolicy(), Narrowing{}
	if m, ok := annotations[AnnMode]; ok {
		switch {
		case m != ModeEnforce && m != ModeAudit:
			return Decision{}, &AnnotationError{AnnMode, m, `must be "enforce" or "audit"`}
		case m == ModeAudit && c.Mode == ModeEnforce && !c.TrustAnnotations:
			return Decision{}, &AnnotationError{AnnMode, m,
				"would let traffic through that the configured mode enforce refuses" + trustHint}
		}
		p.Mode = m
		n.Mode = m
	}
	if v, ok := annotations[AnnProxies]; ok {
		proxies, err := c.annotatedProxies(v)
		if err != nil {
			return Decision{}, err
		}
		p.Proxies = proxies
		n.Proxies = slices.Clone(proxies)
		slices.SortFunc(n.Proxies, netip.AddrPort.Compare)
	}
	// Order does not change what is allowed, so it must not change the digest.
	slices.SortFunc(p.Proxies, netip.AddrPort.Compare)

	if len(p.Proxies) == 0 {
		if c.Selection == SelectAnnotated || enabled == "true" {
			return Decision{}, &Error{Key: "proxies", Msg: fmt.Sprintf(
				"is empty, but the container is enabled by %s=true: a fence needs at least one proxy", AnnEnabled)}
		}
		return Decision{Reason: "no proxies configured: nothing is fenced"}, nil
	}
	return Decision{Fence: true, Policy: p, Narrowing: n}, nil
}

// ourAnnotations returns the container's bypass-hook annotations under
// their lower-case keys, and refuses a key that is not one of them but looks
// like it (a misspelt name, a near miss of the prefix), and two spellings of
// one key with different values: each would leave the container with a
// policy its author did not mean (unfenced, under selection: annotated).
func ourAnnotations(all map[string]string) (map[string]string, error) {
	ours := map[string]string{}
	spelt := map[string]string{}
	for k, v := range all {
		canon, kind := ClassifyAnnotationKey(k)
		switch {
		case kind == KeyOther:
			continue
		case kind == KeyNearMiss:
			return nil, &AnnotationError{k, v, fmt.Sprintf("looks like a misspelling of the prefix %s; the known annotations are %s, %s and %s", AnnotationPrefix, AnnEnabled, AnnMode, AnnProxies)}
		case canon != AnnEnabled && canon != AnnMode && canon != AnnProxies:
			return nil, &AnnotationError{k, v, fmt.Sprintf("is not a bypass-hook annotation; the known ones are %s, %s and %s", AnnEnabled, AnnMode, AnnProxies)}
		}
		if prev, ok := ours[canon]; ok && prev != v {
			return nil, &AnnotationError{k, v, fmt.Sprintf("contradicts %s=%q: one key in two spellings (keys are matched without regard to case)", spelt[canon], prev)}
		}
		ours[canon], spelt[canon] = v, k
	}
	return ours, nil
}

func (c *Config) annotatedProxies(v string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ap, err := ParseProxy(s)
		if err != nil {
			return nil, &AnnotationError{AnnProxies, v, fmt.Sprintf("%q %v", s, err)}
		}
		if !c.TrustAnnotations && !slices.Contains(c.proxies, ap) {
			return nil, &AnnotationError{AnnProxies, v, fmt.Sprintf(
				"%s is not one of the configured proxies; an annotation may only name a subset of them%s", ap, trustHint)}
		}
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	if len(out) == 0 {
		return nil, &AnnotationError{AnnProxies, v, "names no proxy"}
	}
	return out, nil
}

func (c *Config) basePolicy() Policy {
	return Policy{
		Mode:           c.Mode,
		Proxies:        slices.Clone(c.proxies),
		Allow:          slices.Clone(c.allow),
		DNS:            slices.Clone(c.dns),
		AllowUids:      uids(c.AllowUids),
		OtherProtocols: c.OtherProtocols,
		Log: LogPolicy{
			Target:   c.Log.Target,
			Group:    uint16(c.Log.Group),
			Prefix:   c.Log.Prefix,
			Rate:     c.Log.Rate,
			Burst:    c.Log.Burst,
			Required: c.Log.Required,
		},
	}
}

func uids(in []int64) []uint32 {
	var out []uint32
	for _, u := range in {
		out = append(out, uint32(u)) // range checked by Validate
	}
	return out
}
