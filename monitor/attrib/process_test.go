// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestProcessOf(t *testing.T) {
	var id attribIdent
	id.Pid, id.Tid, id.NsPid, id.NsTid, id.Ppid, id.Uid, id.Gid, id.CgroupId = 4242, 4243, 7, 8, 1, 65534, 65533, 99
	copy8(id.Comm[:], "curl")
	copy8(id.Pcomm[:], "sh")
	copy8(id.Exe[:], "curl\x00junk after the end")
	got := processOf(id)
	want := Process{Pid: 4242, Tid: 4243, PidInContainer: 7, TidInContainer: 8, Ppid: 1, ParentComm: "sh",
		Comm: "curl", Exe: "curl", CgroupID: 99, UID: 65534, GID: 65533}
	if got != want {
		t.Errorf("processOf = %+v; want %+v", got, want)
	}
	// A name that fills its field has no NUL: all of it, no more.
	copy8(id.Comm[:], "0123456789abcdef")
	if c := processOf(id).Comm; c != "0123456789abcdef" {
		t.Errorf("a full comm reads %q", c)
	}
}

func copy8(dst []int8, s string) {
	for i := range dst {
		dst[i] = 0
	}
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
}

// FuzzProcessOf: whatever bytes a map value holds, the process read from
// it has names that are valid text without NULs and no longer than their
// fields.
func FuzzProcessOf(f *testing.F) {
	f.Add(make([]byte, binary.Size(attribIdent{})))
	f.Add(bytes.Repeat([]byte{0xff}, binary.Size(attribIdent{})))
	f.Fuzz(func(t *testing.T, b []byte) {
		var id attribIdent
		if len(b) < binary.Size(id) {
			b = append(b, make([]byte, binary.Size(id)-len(b))...)
		}
		if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &id); err != nil {
			t.Fatal(err)
		}
		p := processOf(id)
		for _, s := range []struct {
			v   string
			max int
		}{{p.Comm, len(id.Comm)}, {p.ParentComm, len(id.Pcomm)}, {p.Exe, len(id.Exe)}} {
			if !utf8.ValidString(s.v) || strings.ContainsRune(s.v, 0) || len(s.v) > 3*s.max {
				t.Errorf("name %q from %x", s.v, b)
			}
		}
		if p.Pid != id.Pid || p.PidInContainer != id.NsPid || p.UID != id.Uid {
			t.Errorf("numbers changed: %+v from %+v", p, id)
		}
	})
}
