// SPDX-License-Identifier: Apache-2.0

package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bypass-hook/bypass-hook/internal/safefile"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		follow     safefile.Follow
		want       string // content, or a part of the error
		wantErr    bool
	}{
		{"regular", regular, safefile.NoFollow, "hello", false},
		{"link followed", link, safefile.FollowLink, "hello", false},
		{"link refused", link, safefile.NoFollow, "symbolic link", true},
		{"fifo", fifo, safefile.FollowLink, "a FIFO", true},
		{"device", "/dev/null", safefile.FollowLink, "a character device", true},
		{"directory", dir, safefile.FollowLink, "is a directory", true},
		{"too large", big, safefile.NoFollow, "at most 10", true},
		{"missing", filepath.Join(dir, "none"), safefile.NoFollow, "no such file", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() { data, err = safefile.Read(c.path, 10, c.follow); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Read(%s) blocks", c.path)
			}
			switch {
			case c.wantErr && err == nil:
				t.Errorf("Read(%s) = %q, want an error with %q", c.path, data, c.want)
			case c.wantErr && !strings.Contains(err.Error(), c.want):
				t.Errorf("Read(%s): %v, want %q in it", c.path, err, c.want)
			case !c.wantErr && (err != nil || string(data) != c.want):
				t.Errorf("Read(%s) = %q, %v; want %q", c.path, data, err, c.want)
			}
			if c.name == "missing" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a missing file's error %v is not os.ErrNotExist", err)
			}
		})
	}
}
