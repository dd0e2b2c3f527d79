// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// stateRounds is how many times each state directory fault is injected
// per backend.
const stateRounds = 10

// smallFS mounts a tmpfs of size (as mount(8) takes it) on a directory of
// the test and returns it, unmounted at cleanup.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	testnet.RequireTools(t, "mount", "umount")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes into dir until the file system is full; the returned func
// frees the space again.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	return func() { os.Remove(p) }
}

// The state directory full: a create refuses the container (failure:
// closed) and leaves no rules, no record and no temporary file; a container
// already fenced keeps its fence and record; its poststop still takes both
// out (removing needs no space).
func TestStateDirFull(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			if hookBin == "" {
				t.Skip("skipping: needs root (the hook binary is built only as root)")
			}
			mnt := smallFS(t, "512k")
			e := newEnvIn(t, b, filepath.Join(mnt, "state"), filepath.Join(t.TempDir(), "hook.log"))
			var refused, joinRefused, kept, cleared int
			for range stateRounds {
				first := testnet.NewNetns(t)
				fenced := startIn(t, first)
				if code, stderr := e.run("create", fenced.state()); code != 0 {
					t.Fatalf("create before the disk fills: exit %d: %s", code, stderr)
				}
				free := fill(t, mnt)

				ns := testnet.NewNetns(t)
				c := startIn(t, ns)
				code, stderr := e.run("create", c.state())
				if code == 1 && strings.Contains(stderr, "no space left") {
					refused++
				} else {
					t.Errorf("create with the state directory full: exit %d: %s; want 1 and the cause", code, stderr)
				}
				e.run("poststop", c.stopped()) // as runc does after a failed create
				if l := e.look(ns); l.fence || l.record || l.tmp > 0 {
					t.Errorf("a create refused for a full disk left %+v", l)
				}

				joiner := startIn(t, first)
				if code, _ := e.run("create", joiner.state()); code == 1 {
					joinRefused++
				}
				e.run("poststop", joiner.stopped())
				if l := e.look(first); l.fence && l.record && !l.incomplete && l.tmp == 0 {
					kept++
				} else {
					t.Errorf("the fenced namespace after a refused join on a full disk: %+v", l)
				}

				fenced.kill()
				if code, stderr := e.run("poststop", fenced.stopped()); code != 0 {
					t.Errorf("poststop on a full disk: exit %d: %s", code, stderr)
				}
				if l := e.look(first); !l.fence && !l.record {
					cleared++
				}
				free()
				if f := e.stateFiles(); len(f) > 0 {
					t.Errorf("after the round the state directory holds %v", f)
				}
			}
			t.Logf("%s: state directory full %d times: %d creates refused with nothing left, %d joins refused (%d times the fence and its record kept whole), %d poststops cleared all",
				b, stateRounds, refused, joinRefused, kept, cleared)
		})
	}
}

// The state directory read-only: a create refuses the container and leaves
// no rules; a fenced container's poststop fails and leaves fence and record
// as they were, and clears both once the directory is writable again.
func TestStateDirReadOnly(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			if hookBin == "" {
				t.Skip("skipping: needs root (the hook binary is built only as root)")
			}
			mnt := smallFS(t, "4m")
			e := newEnvIn(t, b, filepath.Join(mnt, "state"), filepath.Join(t.TempDir(), "hook.log"))
			var refused, kept, cleared int
			for range stateRounds {
				first := testnet.NewNetns(t)
				fenced := startIn(t, first)
				if code, stderr := e.run("create", fenced.state()); code != 0 {
					t.Fatalf("create: exit %d: %s", code, stderr)
				}
				remount(t, mnt, "ro")
				ns := testnet.NewNetns(t)
				c := startIn(t, ns)
				if code, _ := e.run("create", c.state()); code == 1 {
					refused++
				}
				if l := e.look(ns); l.fence || l.record {
					t.Errorf("a create refused for a read-only state directory left %+v", l)
				}
				fenced.kill()
				e.run("poststop", fenced.stopped())
				if l := e.look(first); l.unrecorded() {
					t.Errorf("a poststop on a read-only state directory left rules no record names")
				} else if l.fence && l.record {
					kept++
				}
				remount(t, mnt, "rw")
				if code, stderr := e.run("poststop", fenced.stopped()); code != 0 {
					t.Errorf("poststop once writable: exit %d: %s", code, stderr)
				}
				e.run("poststop", c.stopped())
				if l := e.look(first); !l.fence && !l.record {
					cleared++
				}
				if f := e.stateFiles(); len(f) > 0 {
					t.Errorf("after the round the state directory holds %v", f)
				}
			}
			t.Logf("%s: state directory read-only %d times: %d creates refused with nothing left, %d fences kept with their record by a failed poststop, %d cleared once writable",
				b, stateRounds, refused, kept, cleared)
		})
	}
}

func remount(t *testing.T, mnt, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", mode, mnt, err, out)
	}
}

// The state directory removed while a fenced container runs (an operator's
// rm -rf, a tmpfs remounted): its poststop finds no record and leaves the
// rules in the namespace, which no record names any more, until the next
// container of the namespace records them again (or the namespace dies,
// taking them along). The count of such rules is reported as it is.
func TestStateDirRemoved(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			e := newEnv(t, b)
			var unrecorded, recovered int
			for range stateRounds {
				ns, c := e.fenced(t)
				if err := os.RemoveAll(e.stateDir); err != nil {
					t.Fatal(err)
				}
				next := startIn(t, ns)
				c.kill()
				if code, stderr := e.run("poststop", c.stopped()); code != 0 {
					t.Errorf("poststop without a state directory: exit %d: %s", code, stderr)
				}
				if e.look(ns).unrecorded() {
					unrecorded++
				}
				// The next container of the namespace records the fence again.
				if code, stderr := e.run("create", next.state()); code != 0 {
					t.Fatalf("create after the state directory went: exit %d: %s", code, stderr)
				}
				next.kill()
				e.run("poststop", next.stopped())
				if l := e.look(ns); !l.fence && !l.record {
					recovered++
				} else {
					t.Errorf("after the next container's create and poststop: %+v, want nothing", l)
				}
			}
			t.Logf("%s: state directory removed %d times under a fenced container: %d poststops left the rules unrecorded; %d namespaces recorded again and cleared by their next container",
				b, stateRounds, unrecorded, recovered)
		})
	}
}
