// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
)

// joinAction is what create does in a namespace that has a record.
type joinAction int

const (
	// joinInPlace joins the fence as it is (made whole again if need be).
	joinInPlace joinAction = iota
	// installOver installs this container's fence over one no other
	// container uses (Install replaces it atomically).
	installOver
	// removeThenInstall removes a fence no other container uses that
	// another backend made, before this container's goes in.
	removeThenInstall
	// followConfig replaces the fence that other containers share with the
	// newest config's, then joins it: the policies differ only because the
	// operator's config changed since the fence went in.
	followConfig
	// refuseNarrowing refuses the container: its own annotations ask for
	// another policy than the one the namespace's other containers have.
	refuseNarrowing
)

// decideJoin decides what create does in a namespace with record rec.
// others says whether other containers of the namespace still run; want is
// the backend the config asks for, digest and dec the joining container's
// policy. A policy is the config's narrowed by the container's annotations,
// so where the narrowing is the recorded one, a different policy comes from
// the config alone: a restart in a running pod must not fail because the
// operator changed the config, while a container whose annotations differ
// is refused. A namespace that others share keeps its backend.
func decideJoin(rec *records.Record, others bool, want, digest string, dec config.Decision) joinAction {
	switch {
	case !others && rec.Backend != want:
		return removeThenInstall
	case !others && rec.Digest != digest:
		return installOver
	case rec.Digest == digest:
		return joinInPlace
	case sameNarrowing(rec, dec):
		return followConfig
	}
	return refuseNarrowing
}

// sameNarrowing reports whether the container of dec narrows the config as
// the owners of rec did. A record written before the narrowing was kept
// tells it only by the fields annotations can set: equal mode and proxies
// there mean the difference is in the config's other keys.
func sameNarrowing(rec *records.Record, dec config.Decision) bool {
	if rec.Narrowing != nil {
		return rec.Narrowing.Equal(dec.Narrowing)
	}
	return rec.Policy.Mode == dec.Policy.Mode && slices.Equal(rec.Policy.Proxies, dec.Policy.Proxies)
}

// followConfig replaces the fence of rec in ns with policy dec.Policy of
// digest, in the backend that made it, atomically as any install, and
// updates rec (the caller saves it). The rules keep the first owner's log
// prefix.
func (h *Hook) followConfig(store *records.Store, ns netns.Handle, rec *records.Record, dec config.Decision, digest string) error {
	b, err := h.backend(rec.Backend)
	if err != nil {
		return err
	}
	if err := store.SaveIntent(rec, records.IncompleteInstall); err != nil {
		return err
	}
	rs, feat, sums, err := h.install(b, ns, dec.Policy, rec.LogID)
	if err != nil {
		return err
	}
	h.Log.WithFields(logrus.Fields{"netns": rec.Netns.String(), "log_id": rec.LogID, "old_digest": rec.Digest, "new_digest": digest,
		"old_policy": describe(rec.Policy), "new_policy": describe(dec.Policy)}).
		Warn("the config changed since this namespace was fenced: its fence now follows the newest config (replaced atomically)")
	n := dec.Narrowing
	rec.Policy, rec.Digest, rec.Narrowing = dec.Policy, digest, &n
	rec.Features, rec.RuleNames, rec.RulesDigest = feat, ruleNames(rs), sums
	rec.Installed = time.Now().UTC()
	rec.Incomplete = "" // the caller's next save says the change is done
	return nil
}
