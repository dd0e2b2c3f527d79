// SPDX-License-Identifier: GPL-2.0
//
// Who made each attempt out of a fenced network namespace. Two kinds of
// program, both of which the kernels we support load without kprobes,
// trampolines or the BPF LSM:
//
//  - cgroup socket programs at the cgroup v2 root (sock_create, connect4/6,
//    sendmsg4/6) run in the calling process at socket(), connect() and
//    sendto(): they note the process against the socket's cookie. They
//    never refuse anything (they return 1), the fence does.
//  - a BTF tracepoint on kfree_skb sees the packet the fence dropped, with
//    its socket. For TCP it runs in no reliable process (a SYN retransmitted
//    from a timer runs in none), so it takes the process noted for the
//    socket; a datagram or raw socket's packet is dropped in its sender's
//    system call, which it takes instead. It files it under the namespace
//    and the packet's addresses and ports, as the monitor finds them in the
//    log record.
//
//  - a sock_ops program at the same root files a TCP connection of a noted
//    socket under its addresses and ports as it sends its SYN (the ports
//    are chosen by then): in audit mode the fence lets the SYN through and
//    drops nothing, so kfree_skb never sees it.
//  - a BTF tracepoint on sock_send_length sees every send, of every socket
//    family: a send on an AF_VSOCK socket of a fenced namespace goes past
//    the namespace and its fence (to the host or a VM), and is reported,
//    once per socket, with the process, on a ring buffer.
//
// Only namespaces in the fenced map, which the monitor fills, are looked at.

#include <linux/types.h>
#include <linux/bpf.h>
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "GPL";

#define COMM_LEN 16
#define EXE_LEN 64

// A process as it was when it used a socket.
struct ident {
	__u64 netns;     // the namespace's cookie, where the socket was noted
	__u64 cgroup_id;
	__u64 when_ns;   // CLOCK_BOOTTIME of the socket call
	__u32 pid;       // thread group id, as the host sees it
	__u32 tid;       // thread id, as the host sees it
	__u32 ns_pid;    // thread group id in the process's own pid namespace
	__u32 ns_tid;    // thread id in the process's own pid namespace
	__u32 ppid;      // the parent's thread group id, as the host sees it
	__u32 uid;
	__u32 gid;
	__u32 _pad;
	char comm[COMM_LEN];
	char pcomm[COMM_LEN];     // the parent's command name
	char exe[EXE_LEN];        // the executable's file name
};

// A dropped packet of a fenced namespace, as a log record shows it.
struct flow {
	__u64 netns;        // the namespace's cookie
	__u8 saddr[16];     // IPv4 in the first 4 bytes
	__u8 daddr[16];
	__u16 sport;        // host byte order
	__u16 dport;
	__u8 family;        // 4 or 6
	__u8 proto;
	__u16 _pad;
};

// An attempt: who, and when the fence dropped it.
struct attempt {
	struct ident who;
	__u64 dropped_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} fenced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ident);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow);
	__type(value, struct attempt);
} attempts SEC(".maps");

// A send on an AF_VSOCK socket of a fenced namespace.
struct vsock_event {
	struct ident who;
	__u64 netns;
	__u32 cid;      // the peer's context id (2: the host)
	__u32 port;
	__s32 ret;      // what the send returned
	__u32 _pad;
};

// The ring buffer's records are untyped: this keeps the type in the BTF,
// for bpf2go to generate its Go counterpart.
const struct vsock_event *unused_vsock_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} vsock_sends SEC(".maps");

// The AF_VSOCK sockets reported already, by address: one report a socket.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} vsock_seen SEC(".maps");

// Too big for the stack next to the rest: built in a per-CPU slot.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ident);
} scratch SEC(".maps");

// nr_in_own_ns is the number of pid p in the last of its pid namespaces,
// the one of the process that has it.
static __always_inline __u32 nr_in_own_ns(struct pid *p)
{
	unsigned int level = BPF_CORE_READ(p, level);
	int nr = 0;
	// The kernel nests pid namespaces 32 deep at most.
	if (level > 32)
		return 0;
	__u64 off = bpf_core_field_offset(struct pid, numbers) +
		    (__u64)level * bpf_core_type_size(struct upid) +
		    bpf_core_field_offset(struct upid, nr);
	bpf_probe_read_kernel(&nr, sizeof(nr), (void *)p + off);
	return nr;
}

// whoami fills the scratch slot with the calling process.
static __always_inline struct ident *whoami(void)
{
	__u32 zero = 0;
	struct ident *id = bpf_map_lookup_elem(&scratch, &zero);
	if (!id)
		return 0;
	__builtin_memset(id, 0, sizeof(*id));

	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	id->pid = pid_tgid >> 32;
	id->tid = (__u32)pid_tgid;
	id->uid = (__u32)uid_gid;
	id->gid = uid_gid >> 32;
	id->cgroup_id = bpf_get_current_cgroup_id();
	id->when_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(id->comm, sizeof(id->comm));

	struct task_struct *task = bpf_get_current_task_btf();
	id->ns_tid = nr_in_own_ns(BPF_CORE_READ(task, thread_pid));
	id->ns_pid = nr_in_own_ns(BPF_CORE_READ(task, group_leader, thread_pid));
	id->ppid = BPF_CORE_READ(task, real_parent, tgid);
	BPF_CORE_READ_STR_INTO(&id->pcomm, task, real_parent, comm);
	const unsigned char *name = BPF_CORE_READ(task, mm, exe_file, f_path.dentry, d_name.name);
	if (name)
		bpf_probe_read_kernel_str(id->exe, sizeof(id->exe), name);
	return id;
}

// note files the calling process under the socket, in a fenced namespace.
static __always_inline void note(void *ctx)
{
	__u64 ns = bpf_get_netns_cookie(ctx);
	if (!bpf_map_lookup_elem(&fenced, &ns))
		return;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct ident *id = whoami();
	if (!id)
		return;
	id->netns = ns;
	bpf_map_update_elem(&sockets, &cookie, id, BPF_ANY);
}

// At socket(): a raw or ICMP socket has no connect or sendmsg program.
SEC("cgroup/sock_create")
int note_create(struct bpf_sock *ctx)
{
	note(ctx);
	return 1;
}

SEC("cgroup/connect4")
int note_connect4(struct bpf_sock_addr *ctx)
{
	note(ctx);
	return 1;
}

SEC("cgroup/connect6")
int note_connect6(struct bpf_sock_addr *ctx)
{
	note(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int note_sendmsg4(struct bpf_sock_addr *ctx)
{
	note(ctx);
	return 1;
}

SEC("cgroup/sendmsg6")
int note_sendmsg6(struct bpf_sock_addr *ctx)
{
	note(ctx);
	return 1;
}

// file_attempt files who under f.
static __always_inline void file_attempt(struct flow *f, struct ident *who)
{
	struct attempt a = {};
	__builtin_memcpy(&a.who, who, sizeof(a.who));
	a.dropped_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&attempts, f, &a, BPF_ANY);
}

#define SOCK_DGRAM 2
#define SOCK_RAW 3

// The fence drops what it refuses (a reject sends its answer, then drops):
// file the dropped packet's flow under the process that sent it.
SEC("tp_btf/kfree_skb")
int BPF_PROG(dropped, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (reason != bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP))
		return 0;
	struct sock *sk = BPF_CORE_READ(skb, sk);
	if (!sk)
		return 0;
	struct flow f = {};
	f.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
	if (!bpf_map_lookup_elem(&fenced, &f.netns))
		return 0;
	// The cookie the socket programs' bpf_get_socket_cookie gave it (the
	// kernel makes it at the first call); bpf_get_socket_cookie itself
	// does not take the RCU pointer a tracepoint has.
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!cookie)
		return 0;
	struct ident *who = bpf_map_lookup_elem(&sockets, &cookie);
	if (!who)
		return 0;
	// A datagram or raw socket's packet leaves in the system call that
	// sends it, and the fence drops it there (OUTPUT runs synchronously in
	// ip_local_out): the current task is the sender. It is taken over the
	// note, which a send that names no address does not refresh (no
	// sendmsg program runs): a connected UDP socket handed to another
	// program (across an exec, over a unix socket) would otherwise name
	// the one that connected. TCP (a SYN retransmitted from a timer) and
	// SCTP (stream and seqpacket sockets, sent from timers too) keep the
	// note. What else may be current here: a task that did not send, when
	// a packet of such a socket goes out from a softirq (a UDP
	// encapsulation's) on the stack of whatever task was running, or is
	// reinjected by an NFQUEUE verdict in the queue's reader; both need
	// CAP_NET_ADMIN in the namespace to set up. So the task is taken only
	// when it is in the packet's namespace (the idle task and the host's
	// are not), and only for a noted socket (the kernel's own sockets,
	// which send ICMP answers from a softirq, never are). A sender in
	// another namespace (a host process given the socket) keeps the note.
	__u16 type = BPF_CORE_READ(sk, sk_type);
	if (type == SOCK_DGRAM || type == SOCK_RAW) {
		struct task_struct *task = bpf_get_current_task_btf();
		if (BPF_CORE_READ(task, nsproxy, net_ns, net_cookie) == f.netns) {
			struct ident *me = whoami();
			if (me) {
				me->netns = f.netns;
				who = me;
			}
		}
	}

	unsigned char *l3 = BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, network_header);
	__u8 first = 0;
	bpf_probe_read_kernel(&first, 1, l3);
	unsigned char *l4;
	if (first >> 4 == 4) {
		f.family = 4;
		bpf_probe_read_kernel(&f.proto, 1, l3 + 9);
		bpf_probe_read_kernel(f.saddr, 4, l3 + 12);
		bpf_probe_read_kernel(f.daddr, 4, l3 + 16);
		l4 = l3 + (first & 0xf) * 4;
	} else if (first >> 4 == 6) {
		f.family = 6;
		bpf_probe_read_kernel(&f.proto, 1, l3 + 6);
		bpf_probe_read_kernel(f.saddr, 16, l3 + 8);
		bpf_probe_read_kernel(f.daddr, 16, l3 + 24);
		l4 = l3 + 40;
	} else {
		return 0;
	}
	// TCP, UDP, SCTP, UDP-Lite: the header starts with the two ports.
	if (f.proto == 6 || f.proto == 17 || f.proto == 132 || f.proto == 136) {
		__be16 ports[2] = {};
		bpf_probe_read_kernel(ports, sizeof(ports), l4);
		f.sport = bpf_ntohs(ports[0]);
		f.dport = bpf_ntohs(ports[1]);
	}
	file_attempt(&f, who);
	return 0;
}

#define AF_VSOCK 40

// A send on an AF_VSOCK socket of a fenced namespace, once per socket. It
// runs in the sending process (sock_sendmsg), so whoami is the sender.
SEC("tp_btf/sock_send_length")
int BPF_PROG(vsock_send, struct sock *sk, int ret, int flags)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_family) != AF_VSOCK)
		return 0;
	__u64 ns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
	if (!bpf_map_lookup_elem(&fenced, &ns))
		return 0;
	__u64 key = (__u64)sk;
	__u8 one = 1;
	if (bpf_map_update_elem(&vsock_seen, &key, &one, BPF_NOEXIST))
		return 0;
	struct ident *who = whoami();
	if (!who)
		return 0;
	struct vsock_event *e = bpf_ringbuf_reserve(&vsock_sends, sizeof(*e), 0);
	if (!e)
		return 0;
	__builtin_memcpy(&e->who, who, sizeof(e->who));
	e->netns = ns;
	struct vsock_sock *vsk = (struct vsock_sock *)sk;
	e->cid = BPF_CORE_READ(vsk, remote_addr.svm_cid);
	e->port = BPF_CORE_READ(vsk, remote_addr.svm_port);
	e->ret = ret;
	e->_pad = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// A TCP connection of a noted socket, as its SYN is about to leave.
SEC("sockops")
int tcp_connect(struct bpf_sock_ops *ctx)
{
	if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct ident *who = bpf_map_lookup_elem(&sockets, &cookie);
	if (!who)
		return 1;
	struct flow f = {};
	f.netns = who->netns;
	f.proto = 6;
	f.sport = ctx->local_port;
	// In network order, in the upper half of the field on the kernels
	// that still shift it there (the lower half on others).
	__u32 rp = ctx->remote_port;
	f.dport = bpf_ntohs((__u16)(rp > 0xffff ? rp >> 16 : rp));
	if (ctx->family == 2) {
		f.family = 4;
		__u32 l4 = ctx->local_ip4, r4 = ctx->remote_ip4;
		__builtin_memcpy(f.saddr, &l4, 4);
		__builtin_memcpy(f.daddr, &r4, 4);
	} else {
		// One 4-byte load each: the verifier refuses wider reads of the
		// context, which the compiler would otherwise merge them into.
		__u32 l[4], r[4];
		for (int i = 0; i < 4; i++) {
			l[i] = *(volatile __u32 *)&ctx->local_ip6[i];
			r[i] = *(volatile __u32 *)&ctx->remote_ip6[i];
		}
		// An IPv4 peer of an IPv6 socket (::ffff:a.b.c.d) leaves as IPv4.
		if (r[0] == 0 && r[1] == 0 && r[2] == bpf_htonl(0xffff)) {
			f.family = 4;
			__builtin_memcpy(f.saddr, &l[3], 4);
			__builtin_memcpy(f.daddr, &r[3], 4);
		} else {
			f.family = 6;
			__builtin_memcpy(f.saddr, l, 16);
			__builtin_memcpy(f.daddr, r, 16);
		}
	}
	file_attempt(&f, who);
	return 1;
}
