// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"os"

	"github.com/bypass-hook/bypass-hook/hook"
)

// applyConfig brings the node's running fences to the config in force, as
// `bypass-hook apply` does, so that a config the plugin loads (a Helm
// upgrade rolls the plugin with the new one) reaches running pods without
// restarting them. Each load of a new config starts one (startApply);
// they take turns, and each applies the config in force when its turn
// comes, not the one it was started for: two side by side, the older could
// reach a fence last and put its config back. A state directory that does
// not exist holds no fence: it is not made.
func (p *Plugin) applyConfig() {
	p.applying.Lock()
	defer p.applying.Unlock()
	p.mu.Lock()
	p.applyWaiting = false
	cfg, broken := p.cfg, p.broken
	p.mu.Unlock()
	if broken != nil {
		return
	}
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

// startApply starts an apply of the config in force unless one waits its
// turn already: that one will read it. p.mu must be held.
func (p *Plugin) startApply() {
	if p.applyWaiting {
		return
	}
	p.applyWaiting = true
	go p.applyConfig()
}
