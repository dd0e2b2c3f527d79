// SPDX-License-Identifier: Apache-2.0

// Package attrib names the process behind each attempt a fence refuses,
// as the kernel saw it at the moment of the attempt: eBPF programs note the
// process at socket(), connect() and sendto() in the fenced namespaces, and
// file it under the namespace and the addresses and ports of the packet the
// fence drops; the monitor looks its log records up there. A lookup in
// /proc after the fact would be racy: a program refused at once usually
// exits at once, and its pid may by then be another's.
package attrib
