// SPDX-License-Identifier: Apache-2.0

package attrib

// The eBPF objects are compiled ahead and committed, so that neither the
// build nor the machine that runs the monitor needs clang: `make bpf`
// runs this (clang, llvm-strip and libbpf-dev's headers), and
// TestObjectsCurrent fails when bpf/ changed since.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go@v0.22.0 -cc clang -strip llvm-strip -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type ident -type flow -type attempt -type vsock_event attrib bpf/attrib.c
