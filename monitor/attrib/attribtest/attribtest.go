// SPDX-License-Identifier: Apache-2.0

// Package attribtest runs, for tests, programs that make one direct
// attempt out of a namespace and exit at once, under executable names of
// the test's choosing, so that a test can check the attempt is named after
// the right process when nothing of it is left in /proc.
package attribtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

const attemptEnv = "BYPASS_HOOK_ATTEMPT"

// MaybeAttempt makes the attempt the environment asks for and exits, in a
// test binary started by Start; it returns at once otherwise. Call it
// first in TestMain.
func MaybeAttempt() {
	spec := os.Getenv(attemptEnv)
	if spec == "" {
		return
	}
	proto, addr, _ := strings.Cut(spec, " ")
	// Both programs of a pair wait for the same moment, so that their
	// attempts overlap.
	if at, ok := os.LookupEnv(attemptEnv + "_AT"); ok {
		var ns int64
		fmt.Sscan(at, &ns)
		time.Sleep(time.Until(time.Unix(0, ns)))
	}
	var err error
	switch proto {
	case "tcp":
		var c net.Conn
		// Refused at once by a fence; let through in audit mode to where
		// nothing answers, it times out, which is as good.
		c, err = net.DialTimeout("tcp", addr, time.Second)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			err = nil
		} else if err == nil {
			c.Close()
		}
	case "udp":
		var c net.Conn
		if c, err = net.Dial("udp", addr); err == nil {
			_, err = c.Write([]byte("attempt"))
			c.Close()
		}
	case "udp-exec":
		// "ADDR PROGRAM": connect a UDP socket to ADDR and hand it, across
		// an exec, to PROGRAM, which sends on it ("udp-fd"): the process
		// that connected is not the one that sends.
		next := ""
		addr, next, _ = strings.Cut(addr, " ")
		var c net.Conn
		if c, err = net.Dial("udp", addr); err == nil {
			var f *os.File
			if f, err = c.(*net.UDPConn).File(); err == nil {
				fd := int(f.Fd())
				if _, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err == nil { // kept across the exec
					env := []string{fmt.Sprintf("%s=udp-fd %d", attemptEnv, fd)}
					for _, kv := range os.Environ() {
						if !strings.HasPrefix(kv, attemptEnv+"=") {
							env = append(env, kv)
						}
					}
					err = syscall.Exec(next, []string{next, "-test.run=^$"}, env)
				}
			}
		}
	case "udp-unix":
		// "ADDR PROGRAM": connect a UDP socket to ADDR and hand it over a
		// unix socket to PROGRAM, started as a child, which sends on it
		// ("udp-recv"): the sender is another process, of another name.
		next := ""
		addr, next, _ = strings.Cut(addr, " ")
		err = handOver(addr, next)
	case "udp-recv":
		var fd int
		fmt.Sscan(addr, &fd)
		buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
		var oobn int
		if _, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, 0); err == nil {
			var msgs []unix.SocketControlMessage
			var fds []int
			if msgs, err = unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
				if fds, err = unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
					_, err = unix.Write(fds[0], []byte("attempt"))
				}
			} else if err == nil {
				err = fmt.Errorf("%d control messages, want the one socket", len(msgs))
			}
		}
	case "udp-fd":
		var fd int
		fmt.Sscan(addr, &fd)
		_, err = unix.Write(fd, []byte("attempt"))
	case "vsock":
		// "CID:port": connect, and send whether or not it connected (a send
		// on a socket that is not connected fails, and is seen all the same).
		var cid, port uint32
		fmt.Sscanf(addr, "%d:%d", &cid, &port)
		var fd int
		if fd, err = unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
			_ = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
			_, _ = unix.Write(fd, []byte("attempt"))
			unix.Close(fd)
		}
	default:
		err = fmt.Errorf("unknown protocol %q", proto)
	}
	// A UDP send the fence drops fails with EPERM.
	if err != nil && !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPERM) {
		fmt.Fprintln(os.Stderr, "attempt:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// handOver connects a UDP socket to addr and passes it over a unix socket
// to program, started as a child ("udp-recv"), and waits for the child.
func handOver(addr, program string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := c.(*net.UDPConn).File()
	if err != nil {
		return err
	}
	defer f.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "mine"), os.NewFile(uintptr(pair[1]), "theirs")
	defer mine.Close()
	cmd := exec.Command(program, "-test.run=^$")
	cmd.Env = []string{attemptEnv + "=udp-recv 3"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, attemptEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return err
	}
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	return cmd.Wait()
}

// Program is a copy of the running test binary under a name of its own.
type Program struct{ Path string }

// NewProgram copies the test binary to name in a temporary directory: its
// attempts show that name as their executable.
func NewProgram(t testing.TB, name string) Program {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir, whose parent only root may enter: the attempts run
	// as nobody.
	dir, err := os.MkdirTemp("", "attempt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return Program{Path: p}
}

// Start runs p inside ns as uid testnet.Nobody, to make one attempt of
// proto ("tcp", "udp", or "vsock" to "CID:port"; "udp-exec" or "udp-unix"
// to "ADDR PROGRAM", handing a UDP socket to PROGRAM) to addr, at the moment at if not zero. Wait for it
// with Cmd.Wait; its pid is Cmd.Process.Pid.
func (p Program) Start(ns *testnet.Netns, proto, addr string, at time.Time) (*exec.Cmd, error) {
	cmd := exec.Command(p.Path, "-test.run=^$")
	cmd.Env = append(os.Environ(), attemptEnv+"="+proto+" "+addr)
	if !at.IsZero() {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s_AT=%d", attemptEnv, at.UnixNano()))
	}
	cmd.Stderr = new(bytes.Buffer)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: testnet.Nobody, Gid: testnet.Nobody},
		Pdeathsig:  syscall.SIGKILL,
	}
	// Started from a thread inside ns, the program is born there.
	err := ns.Do(cmd.Start)
	return cmd, err
}

// Run starts p as Start does and waits until it has exited and been
// reaped: nothing of it is left in /proc.
func (p Program) Run(t testing.TB, ns *testnet.Netns, proto, addr string) int {
	t.Helper()
	cmd, err := p.Start(ns, proto, addr, time.Time{})
	if err != nil {
		t.Fatalf("starting %s: %v", p.Path, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s attempting %s %s: %v: %s", filepath.Base(p.Path), proto, addr, err, cmd.Stderr)
	}
	return cmd.Process.Pid
}
