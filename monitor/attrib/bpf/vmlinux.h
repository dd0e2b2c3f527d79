/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types attrib.c reads, trimmed by hand from the running
 * kernel's BTF (bpftool btf dump file /sys/kernel/btf/vmlinux format c).
 * Only the fields read are declared: preserve_access_index makes every
 * access a CO-RE relocation, which the loader resolves against the BTF of
 * the kernel it runs on, wherever these fields are there.
 */
#ifndef __ATTRIB_VMLINUX_H__
#define __ATTRIB_VMLINUX_H__

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct net {
	__u64 net_cookie;
};

typedef struct {
	struct net *net;
} possible_net_t;

typedef struct {
	__s64 counter;
} atomic64_t;

struct sock_common {
	unsigned short skc_family;
	possible_net_t skc_net;
	atomic64_t skc_cookie;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_type;
};

struct sockaddr_vm {
	unsigned int svm_port;
	unsigned int svm_cid;
};

struct vsock_sock {
	struct sock sk;
	struct sockaddr_vm remote_addr;
};

struct sk_buff {
	struct sock *sk;
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	struct qstr d_name;
};

struct path {
	struct dentry *dentry;
};

struct file {
	struct path f_path;
};

struct mm_struct {
	struct file *exe_file;
};

struct upid {
	int nr;
	void *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

struct nsproxy {
	struct net *net_ns;
};

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	struct pid *thread_pid;
	struct nsproxy *nsproxy;
	char comm[16];
};

#pragma clang attribute pop

enum skb_drop_reason {
	SKB_DROP_REASON_NETFILTER_DROP = 12,
};

#endif
