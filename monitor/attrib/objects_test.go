// SPDX-License-Identifier: Apache-2.0

package attrib

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestObjectsCurrent fails when the programs' sources changed since the
// committed objects were built: `make bpf` rebuilds them and the sums.
// It compares sums, not a rebuild, so that it runs (and fails) where no
// clang is installed, CI included; a rebuild is byte for byte the same
// only with the same clang and libbpf headers.
func TestObjectsCurrent(t *testing.T) {
	f, err := os.Open("bpf/objects.sha256")
	if err != nil {
		t.Fatalf("%v: run make bpf", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("bpf/objects.sha256: a line that is no sha256sum line: %q", sc.Text())
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s changed since the eBPF objects were built: run make bpf and commit attrib_bpfel.o, attrib_bpfel.go and bpf/objects.sha256", name)
		}
		n++
	}
	if n < 3 {
		t.Errorf("bpf/objects.sha256 sums %d files; want gen.go, bpf/attrib.c and bpf/vmlinux.h", n)
	}
}
