// SPDX-License-Identifier: Apache-2.0

package check

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// Each registration is compared with the config its hook reads: a hooks.d
// file written under another selection (issue 24: written under annotated
// while the config says all, unannotated containers started unfenced and
// check said 0 warnings), a CDI spec without this version's devices, an NRI
// plugin that reads another config.
func TestRegistrationsAgainstConfig(t *testing.T) {
	p := fakeHost(t, "", nil, nil)
	p.NRIConfDir = filepath.Join(t.TempDir(), "conf.d")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bypass-hook-oci")
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(bin, []byte("#!/bin/sh\n"))
	os.Chmod(bin, 0o755)
	cfgAt := func(name, y string) *config.Config {
		t.Helper()
		path := filepath.Join(dir, name)
		write(path, []byte(y))
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	all := cfgAt("all.yaml", "proxies: [198.51.100.1:3128]\nselection: all\n")
	annotated := cfgAt("annotated.yaml", "proxies: [198.51.100.1:3128]\nselection: annotated\n")
	hooksFile := filepath.Join(p.HooksDirs[0], "bypass-hook.json")
	writeHooks := func(reg install.Registration, selection string) {
		t.Helper()
		data, err := install.NewHooksDirEntry(reg, selection).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		write(hooksFile, data)
	}

	for _, tc := range []struct {
		name        string
		reg         install.Registration
		writtenFor  string
		checked     *config.Config
		want        Status
		detail, fix string
	}{
		{"annotated file, config all", install.Registration{Binary: bin}, config.SelectAnnotated, all, Warn, "UNFENCED", "install hooks-dir " + p.HooksDirs[0]},
		{"all file, config annotated", install.Registration{Binary: bin}, config.SelectAll, annotated, Warn, "fences only the annotated", "install hooks-dir"},
		{"all file, config all", install.Registration{Binary: bin}, config.SelectAll, all, OK, "", ""},
		{"annotated file, config annotated", install.Registration{Binary: bin}, config.SelectAnnotated, annotated, OK, "", ""},
		// The hook is told its config: that one's selection counts (and
		// hookItem warns that it is not the one checked).
		{"annotated file, its own config annotated", install.Registration{Binary: bin, Config: annotated.Path}, config.SelectAnnotated, all, Warn, "annotated", "check that one with --config " + annotated.Path},
		{"annotated file, its own config all", install.Registration{Binary: bin, Config: all.Path}, config.SelectAnnotated, annotated, Warn, "UNFENCED", "--config " + all.Path},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeHooks(tc.reg, tc.writtenFor)
			it, ok := find(registrationItems(p, tc.checked), "registration", "hooks.d")
			switch {
			case !ok:
				t.Fatal("no hooks.d item")
			case it.Status != tc.want || !strings.Contains(it.Detail, tc.detail) || !strings.Contains(it.Fix, tc.fix):
				t.Errorf("%+v; want %s with %q in the detail and %q in the fix", it, tc.want, tc.detail, tc.fix)
			}
		})
	}
	os.Remove(hooksFile)

	// A CDI spec as this version writes it, then one without the audit device.
	cdiFile := filepath.Join(p.CDIDirs[0], install.CDIFileName)
	spec := install.NewCDISpec(install.Registration{Binary: bin})
	data, _ := install.MarshalCDISpec(spec)
	write(cdiFile, data)
	for _, it := range registrationItems(p, all) {
		if it.Name == "cdi" && it.Status != OK {
			t.Errorf("a current CDI spec: %+v", it)
		}
	}
	spec.Devices = spec.Devices[:1]
	data, _ = install.MarshalCDISpec(spec)
	write(cdiFile, data)
	var warned bool
	for _, it := range registrationItems(p, all) {
		if it.Name == "cdi" && it.Status == Warn && strings.Contains(it.Detail, config.DeviceAudit) && strings.Contains(it.Fix, "install cdi") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("a CDI spec without the audit device: no warning in %+v", registrationItems(p, all))
	}
	os.Remove(cdiFile)

	// The pre-registered NRI plugin told another config.
	write(filepath.Join(p.NRIConfDir, "10-bypass-hook.conf"), []byte("config: "+annotated.Path+"\n"))
	if it, ok := find(registrationItems(p, all), "registration", "nri config"); !ok || it.Status != Warn || !strings.Contains(it.Fix, annotated.Path) {
		t.Errorf("an NRI plugin reading another config: %+v", it)
	}
	write(filepath.Join(p.NRIConfDir, "10-bypass-hook.conf"), []byte("config: "+all.Path+"\n"))
	if it, ok := find(registrationItems(p, all), "registration", "nri config"); ok {
		t.Errorf("an NRI plugin reading the checked config: %+v", it)
	}
}

// The comparisons read registration files as the rest of check does: a
// FIFO in the CDI directory or NRI's conf.d does not hang check.
func TestRegistrationsAgainstConfigFIFO(t *testing.T) {
	p := fakeHost(t, "", nil, nil)
	p.NRIConfDir = filepath.Join(t.TempDir(), "conf.d")
	for _, f := range []string{filepath.Join(p.CDIDirs[0], install.CDIFileName), filepath.Join(p.NRIConfDir, "10-bypass-hook.conf")} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := syscall.Mkfifo(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := mustParse(t, "proxies: [198.51.100.1:3128]")
	cfg.Path = filepath.Join(t.TempDir(), "config.yaml")
	done := make(chan struct{})
	go func() {
		registrationItems(p, cfg)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("check hangs on a FIFO among the registrations")
	}
}
