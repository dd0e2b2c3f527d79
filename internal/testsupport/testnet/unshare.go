// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// StartUnshared starts a `sleep` in a network namespace of its own
// (`unshare --net`), as a runtime makes one, and returns it once it is in
// that namespace, with the namespace's path under /proc. The process is
// killed when the test ends (or earlier by the caller).
func StartUnshared(t testing.TB) (*exec.Cmd, string) {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "unshare", "sleep")
	cmd := exec.Command("unshare", "--net", "sleep", "3600")
	// The child starts in the namespace of the thread that forks it, which
	// is not always the process's first thread's (/proc/self): compare
	// with the forking thread's, or a child still in it may pass as unshared.
	runtime.LockOSThread()
	own, _ := os.Readlink("/proc/thread-self/ns/net")
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	path := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, _ := os.Readlink(path); got != "" && got != own {
			return cmd, path
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not enter a namespace of its own in 5 s")
		}
	}
}
