// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook/netns"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// A late-fencing pass fences with the config in force when it reaches each
// container, not the one of its synchronization: a pass waits for the one
// before it and takes a hook stage's time per container, and the operator
// may tighten the config meanwhile. The plugin's apply of the new config
// goes through the fences recorded then; one the pass put in afterwards
// with the old config kept the old config's openings (here an allowed
// destination) until the next config change.
func TestLatePassFencesWithTheConfigInForce(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "sleep")
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	cfgPath, binary := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "bypass-hook")
	if err := os.WriteFile(binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(yaml string) *config.Config {
		yaml = "proxies: [198.51.100.1:3128]\nstateDir: " + stateDir + "\n" + yaml
		if err := os.WriteFile(cfgPath+".new", []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".new", cfgPath); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const opening = "198.51.100.50"
	old := writeConfig("allow: [{cidr: " + opening + "/32}]\n")
	logger, _ := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	p, err := New(Options{Binary: binary, Config: cfgPath, Log: logger})
	if err != nil {
		t.Fatal(err)
	}

	ns := testnet.NewNetns(t)
	cmd := ns.Command(context.Background(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	want, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, ok := netns.Peek(netns.PidPath(cmd.Process.Pid)); ok && got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container's process is not in its namespace after 5 s")
		}
	}
	nss := []*api.LinuxNamespace{{Type: "network", Path: ns.Path}}
	pod := &api.PodSandbox{Id: "pod", Name: "pod", Namespace: "team", Linux: &api.LinuxPodSandbox{Namespaces: nss}}
	ctr := &api.Container{Id: "late-ctr", PodSandboxId: "pod", Name: "app", State: api.ContainerState_CONTAINER_RUNNING, Pid: uint32(cmd.Process.Pid)}
	items := selectLate(old, nil, []*api.PodSandbox{pod}, []*api.Container{ctr}, binary)
	if len(items) != 1 || items[0].Cannot != "" {
		t.Fatalf("selectLate: %+v", items)
	}

	// The pass waits (for the pass before it) while the config is tightened.
	release := make(chan struct{})
	p.late.testPass = func() { <-release }
	done := make(chan struct{})
	go func() { p.fenceLate(old, items); close(done) }()
	tight := writeConfig("")
	if cfg, _, _ := p.current(); len(cfg.Allow) != len(tight.Allow) {
		t.Fatal("the plugin did not load the tightened config")
	}
	close(release)
	<-done

	store, err := records.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Load(want.Key())
	if err != nil || rec == nil {
		t.Fatalf("no record of the late fence: %v", err)
	}
	dec, err := tight.Decide(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Digest != dec.Policy.Digest() {
		t.Errorf("the late fence has the policy %s, not the config in force's %s", rec.Digest, dec.Policy.Digest())
	}
	if dump, err := testnet.RulesIn(ns); err != nil || strings.Contains(dump, opening) {
		t.Errorf("the late fence still lets %s through, which the config in force no longer allows (%v):\n%s", opening, err, dump)
	}
}
