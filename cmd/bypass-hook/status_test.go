// SPDX-License-Identifier: Apache-2.0

package main

import (
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/rules"
	"github.com/bypass-hook/bypass-hook/status"
)

// status's nf_log_all_netns warning follows the log target of the fences it
// shows, which an annotation may have set apart from the config's.
func TestLogTargetShown(t *testing.T) {
	fence := func(target string, logs bool) status.FenceStatus {
		return status.FenceStatus{Log: config.LogPolicy{Target: target}, Features: rules.Features{Log: logs, Conntrack: true}}
	}
	for _, tc := range []struct {
		name   string
		config string
		fences []status.FenceStatus
		want   string
	}{
		{"no fence: the config's kernel", config.LogKernel, nil, config.LogKernel},
		{"no fence: the config's nflog", config.LogNflog, nil, config.LogNflog},
		{"nflog fences under a kernel config", config.LogKernel, []status.FenceStatus{fence(config.LogNflog, true)}, config.LogNflog},
		{"a kernel fence under an nflog config", config.LogNflog, []status.FenceStatus{fence(config.LogNflog, true), fence(config.LogKernel, true)}, config.LogKernel},
		{"a kernel fence without the LOG target logs nothing", config.LogKernel, []status.FenceStatus{fence(config.LogKernel, false)}, config.LogNflog},
	} {
		if got := logTargetShown(tc.config, tc.fences); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
