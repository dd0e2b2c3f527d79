// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"os"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
)

// applyConfig brings the node's running fences to cfg, as `bypass-hook
// apply` does, so that a config the plugin loads (a Helm upgrade rolls the
// plugin with the new one) reaches running pods without restarting them.
// A state directory that does not exist holds no fence: it is not made.
func (p *Plugin) applyConfig(cfg *config.Config) {
	if _, err := os.Stat(cfg.StateDir); err != nil {
		return
	}
	log := p.log.WithField("stage", "apply")
	applied, err := hook.New(cfg, log).Apply()
	if err != nil {
		log.WithError(err).Error("NRI: bringing the running fences to the config")
		return
	}
	counts := map[string]int{}
	for _, a := range applied {
		counts[a.Action]++
	}
	if len(applied) > 0 {
		log.WithField("fences", counts).Info("NRI: brought the running fences to the config")
	}
}
