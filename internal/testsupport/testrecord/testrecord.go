// SPDX-License-Identifier: Apache-2.0

// Package testrecord gives tests the record of a fence without installing it.
package testrecord

import (
	"net/netip"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/rules"
)

// Record is a record of namespace ino fenced for logID with mode and log
// target, owned by containers of no process (pid -1).
func New(ino uint64, logID, mode, target string, owners ...string) *records.Record {
	rec := &records.Record{
		Netns:   netns.ID{Dev: 4, Ino: ino},
		Backend: config.BackendIptables,
		Digest:  mode + target,
		LogID:   logID,
		Policy: config.Policy{Mode: mode, Proxies: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:3128")},
			Log: config.LogPolicy{Target: target, Group: 7231, Prefix: "bypass", Rate: "5/second", Burst: 10}},
		Features:  rules.AllFeatures,
		Installed: time.Now(),
	}
	for _, o := range owners {
		rec.Owners = append(rec.Owners, records.Owner{ID: o, Pid: -1})
	}
	return rec
}
