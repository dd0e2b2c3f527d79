// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Record
		err  bool
	}{
		{"4,1234,5678901,-;bypass:abc: IN= OUT=eth0 SRC=198.51.100.10\n", Record{Priority: 4, Seq: 1234, SinceBoot: 5678901 * time.Microsecond, Message: "bypass:abc: IN= OUT=eth0 SRC=198.51.100.10"}, false},
		{"6,7,8,c,caller=T1;text with; a semicolon\n SUBSYSTEM=net\n DEVICE=+net:eth0\n", Record{Priority: 6, Seq: 7, SinceBoot: 8 * time.Microsecond, Message: "text with; a semicolon"}, false},
		{"6,7,8,-;", Record{Priority: 6, Seq: 7, SinceBoot: 8 * time.Microsecond}, false},
		{"no header at all", Record{}, true},
		{"6,7,8;three fields", Record{}, true},
		{"x,7,8,-;bad priority", Record{}, true},
		{"6,-1,8,-;bad sequence", Record{}, true},
		{"6,7,99999999999999999999,-;bad time", Record{}, true},
	} {
		got, err := Parse([]byte(c.in))
		switch {
		case c.err && err == nil:
			t.Errorf("Parse(%q) = %+v, want an error", c.in, got)
		case !c.err && (err != nil || got != c.want):
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("4,1234,5678901,-;bypass:abc: SRC=1.2.3.4\n"))
	f.Add([]byte("6,7,8,c,caller=T1;a\n K=V\n"))
	f.Add([]byte(";"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		if strings.Contains(r.Message, "\n") || r.SinceBoot < 0 || r.Priority < 0 {
			t.Errorf("Parse(%q) = %+v", b, r)
		}
	})
}

// Against the real kernel log: a line written to /dev/kmsg is read back
// with its sequence number after those seen before.
func TestReaderRealKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: reading and writing /dev/kmsg needs root")
	}
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SeekEnd(); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	marker := "bypass-hook kmsg test " + time.Now().Format(time.RFC3339Nano)
	if _, err := w.WriteString("<7>" + marker + "\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rec, err := r.Next()
			if err != nil {
				t.Errorf("Next: %v", err)
				return
			}
			if strings.Contains(rec.Message, marker) {
				if rec.Seq == 0 {
					t.Errorf("record %+v has no sequence number", rec)
				}
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the line written to /dev/kmsg was not read back")
	}
	// Close ends a Next that waits.
	ended := make(chan error)
	go func() {
		for {
			if _, err := r.Next(); err != nil {
				ended <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	r.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Next after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Next")
	}
}
