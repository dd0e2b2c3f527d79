// SPDX-License-Identifier: Apache-2.0

package install_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/install"
)

func TestHooksDirsFrom(t *testing.T) {
	podmanKey := []string{"engine", "hooks_dir"}
	crioKey := []string{"crio", "runtime", "hooks_dir"}
	def := []string{"/usr/share/containers/oci/hooks.d"}
	type file = install.ConfigFile
	for _, tc := range []struct {
		name   string
		files  []file
		key    []string
		want   []string
		from   string
		errHas string
	}{
		{"no files: the default", nil, podmanKey, def, "the built-in default", ""},
		{"Debian's shipped containers.conf, all commented", []file{{"/usr/share/containers/containers.conf",
			[]byte("[engine]\n#hooks_dir = [\n#  \"/usr/share/containers/oci/hooks.d\",\n#]\nimage_default_transport = \"docker://\"\n")}},
			podmanKey, def, "the built-in default", ""},
		{"set in /etc", []file{
			{"/usr/share/containers/containers.conf", []byte("[engine]\n")},
			{"/etc/containers/containers.conf", []byte("[engine]\nhooks_dir = [\"/etc/containers/oci/hooks.d\", \"/opt/hooks\"]\n")}},
			podmanKey, []string{"/etc/containers/oci/hooks.d", "/opt/hooks"}, "/etc/containers/containers.conf", ""},
		{"a later drop-in wins", []file{
			{"/etc/containers/containers.conf", []byte("[engine]\nhooks_dir = [\"/a\"]\n")},
			{"/etc/containers/containers.conf.d/10.conf", []byte("[engine]\nhooks_dir = [\"/b/\"]\n")},
			{"/etc/containers/containers.conf.d/20.conf", []byte("[containers]\nlog_driver = \"k8s-file\"\n")}},
			podmanKey, []string{"/b"}, "/etc/containers/containers.conf.d/10.conf", ""},
		{"in the wrong table it is not podman's", []file{{"/etc/containers/containers.conf", []byte("hooks_dir = [\"/a\"]\n[containers]\nhooks_dir = [\"/b\"]\n")}},
			podmanKey, def, "the built-in default", ""},
		{"an empty list reads nothing", []file{{"/etc/containers/containers.conf", []byte("[engine]\nhooks_dir = []\n")}},
			podmanKey, []string{}, "/etc/containers/containers.conf", ""},
		{"CRI-O's table", []file{{"/etc/crio/crio.conf", []byte("[crio]\n[crio.runtime]\nhooks_dir = [\"/etc/containers/oci/hooks.d\", \"/run/containers/oci/hooks.d\"]\n")}},
			crioKey, []string{"/etc/containers/oci/hooks.d", "/run/containers/oci/hooks.d"}, "/etc/crio/crio.conf", ""},
		{"CRI-O's dotted table", []file{{"/etc/crio/crio.conf.d/00-default", []byte("[crio.runtime]\nhooks_dir = [\"/x\"]\n")}},
			crioKey, []string{"/x"}, "/etc/crio/crio.conf.d/00-default", ""},
		{"not TOML", []file{{"/etc/containers/containers.conf", []byte("[engine\n")}}, podmanKey, nil, "", "/etc/containers/containers.conf"},
		{"not a list", []file{{"/etc/containers/containers.conf", []byte("[engine]\nhooks_dir = \"/a\"\n")}}, podmanKey, nil, "", "not a list"},
		{"not strings", []file{{"/etc/containers/containers.conf", []byte("[engine]\nhooks_dir = [1]\n")}}, podmanKey, nil, "", "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs, from, err := install.HooksDirsFrom(tc.files, tc.key, def)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want one saying %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dirs, tc.want) || from != tc.from {
				t.Errorf("got %q from %q, want %q from %q", dirs, from, tc.want, tc.from)
			}
		})
	}
}

func TestDefaultAndCheckHooksDirs(t *testing.T) {
	podman := install.Engine{Name: "podman", Dirs: []string{"/usr/share/containers/oci/hooks.d"}, From: "the built-in default"}
	crio := install.Engine{Name: "CRI-O", Dirs: []string{"/etc/containers/oci/hooks.d", "/usr/share/containers/oci/hooks.d"}, From: "/etc/crio/crio.conf"}
	empty := install.Engine{Name: "podman", Dirs: []string{}, From: "/etc/containers/containers.conf"}
	for _, tc := range []struct {
		name     string
		engines  []install.Engine
		want     []string // DefaultHooksDirs
		defErr   string
		dir      string // CheckHooksDir
		readers  []string
		checkErr string
	}{
		{"podman alone", []install.Engine{podman}, []string{"/usr/share/containers/oci/hooks.d"}, "",
			"/etc/containers/oci/hooks.d", nil, "podman reads /usr/share/containers/oci/hooks.d (from the built-in default)"},
		{"podman alone, its dir", []install.Engine{podman}, []string{"/usr/share/containers/oci/hooks.d"}, "",
			"/usr/share/containers/oci/hooks.d/", []string{"podman"}, ""},
		{"both, first dirs differ", []install.Engine{podman, crio}, []string{"/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"}, "",
			"/usr/share/containers/oci/hooks.d", []string{"podman", "CRI-O"}, ""},
		{"both, only CRI-O reads it", []install.Engine{podman, crio}, []string{"/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"}, "",
			"/etc/containers/oci/hooks.d", []string{"CRI-O"}, ""},
		{"none installed", nil, nil, "neither podman nor CRI-O is installed",
			"/usr/share/containers/oci/hooks.d", nil, "pass --force"},
		{"empty hooks_dir", []install.Engine{empty}, nil, "hooks_dir is empty in /etc/containers/containers.conf",
			"/usr/share/containers/oci/hooks.d", nil, "no installed engine reads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs, err := install.DefaultHooksDirs(tc.engines)
			switch {
			case tc.defErr != "" && (err == nil || !strings.Contains(err.Error(), tc.defErr)):
				t.Errorf("DefaultHooksDirs: %v, want an error saying %q", err, tc.defErr)
			case tc.defErr == "" && (err != nil || !slices.Equal(dirs, tc.want)):
				t.Errorf("DefaultHooksDirs: %q, %v; want %q", dirs, err, tc.want)
			}
			readers, err := install.CheckHooksDir("", tc.dir, tc.engines)
			var names []string
			for _, e := range readers {
				names = append(names, e.Name)
			}
			switch {
			case tc.checkErr != "" && (err == nil || !strings.Contains(err.Error(), tc.checkErr)):
				t.Errorf("CheckHooksDir(%s): %v, want an error saying %q", tc.dir, err, tc.checkErr)
			case tc.checkErr == "" && (err != nil || !slices.Equal(names, tc.readers)):
				t.Errorf("CheckHooksDir(%s): %q, %v; want %q", tc.dir, names, err, tc.readers)
			}
		})
	}
}

// Under --root (packaging) every engine counts as installed and its config
// is read under the root.
func TestInstalledEnginesUnderRoot(t *testing.T) {
	root := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	engines, err := install.InstalledEngines(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := install.DescribeEngines(engines); got != "podman reads /usr/share/containers/oci/hooks.d (from the built-in default); CRI-O reads /usr/share/containers/oci/hooks.d (from the built-in default)" {
		t.Errorf("empty root: %s", got)
	}
	write("/etc/containers/containers.conf.d/50-hooks.conf", "[engine]\nhooks_dir = [\"/etc/containers/oci/hooks.d\"]\n")
	write("/etc/crio/crio.conf.d/10-hooks.conf", "[crio.runtime]\nhooks_dir = [\"/opt/crio/hooks.d\"]\n")
	write("/etc/crio/crio.conf.d/05-hooks", "[crio.runtime]\nhooks_dir = [\"/overridden\"]\n")
	write("/etc/crio/crio.conf.d/20-other", "[crio.runtime]\nconmon_cgroup = \"pod\"\n")
	write("/etc/containers/containers.conf.d/90-hooks.txt", "[engine]\nhooks_dir = [\"/not/read\"]\n")
	if engines, err = install.InstalledEngines(root); err != nil {
		t.Fatal(err)
	}
	if got := install.DescribeEngines(engines); got != "podman reads /etc/containers/oci/hooks.d (from /etc/containers/containers.conf.d/50-hooks.conf); CRI-O reads /opt/crio/hooks.d (from /etc/crio/crio.conf.d/10-hooks.conf)" {
		t.Errorf("with drop-ins: %s", got)
	}
	write("/etc/containers/containers.conf", "[engine\n")
	if _, err := install.InstalledEngines(root); err == nil || !strings.Contains(err.Error(), "/etc/containers/containers.conf") {
		t.Errorf("a broken containers.conf: %v", err)
	}
}
