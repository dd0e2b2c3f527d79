// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// rejectedConfig says why the config rolled out last for the plugin's
// config file was refused by `install config` (the DaemonSet's init step),
// "" when none was: the plugin then fences with the node's previous config,
// and is not ready, so that the rollout stops at the first node.
func (p *Plugin) rejectedConfig() string {
	p.mu.Lock()
	cfg := p.cfg
	p.mu.Unlock()
	if cfg == nil {
		return ""
	}
	why, ok := install.Rejected(config.File(cfg))
	if !ok {
		return ""
	}
	return "the config rolled out last was refused and is NOT in force (" + why + "); the plugin goes on with the node's previous config: fix the config and roll out again"
}
