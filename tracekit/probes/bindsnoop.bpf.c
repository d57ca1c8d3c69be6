// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bindsnoop: bind() of IPv4 and IPv6 sockets, with protocol, address, port and options.
 *
 * BCC and libbpf-tools use kprobes on inet_bind/inet6_bind.  The syscall tracepoints see
 * the same calls on every kernel with CONFIG_FTRACE_SYSCALLS, kprobes or not: the enter
 * side keeps (fd, sockaddr *) per thread, the exit side finds the socket through the
 * fd table (current->files), reads the address the caller passed and the port the kernel
 * bound (its own pick for port 0), and the protocol and option bits from the socket.
 * bind() via io_uring (IORING_OP_BIND, 6.11+) is not seen.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "tk_inet.h"
#include "bindsnoop.h"

#ifndef EBADF
#define EBADF 9
#endif
#ifndef ENOTSOCK
#define ENOTSOCK 88
#endif

const volatile __u32 targ_tgid = 0;     /* 0: any process */
const volatile __u32 targ_uid = INVALID_UID;
const volatile bool ignore_errors = true;   /* drop failed binds (BCC without -E) */
/* count per (address, port) in `counts` instead of sending events (BCC's --count) */
const volatile bool count_mode = false;

/* --cgroup / --cgroupmap / --mntnsmap (Probe(cgroup=, cgroupmap=, mntnsmap=)) */
TK_DECLARE_CGROUP_FILTER();
TK_DECLARE_CGROUPMAP_FILTER();
TK_DECLARE_MNTNS_FILTER();

__u64 events_emitted = 0;
TK_DROP_COUNTER(events);

struct args_t {
	__u64 fd;
	__u64 uaddr;            /* struct sockaddr __user * */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);                     /* thread id */
	__type(value, struct args_t);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct bind_key);
	__type(value, __u64);
} counts SEC(".maps");

__u64 keys_dropped = 0;     /* count_mode: `counts` full, a new address/port not counted */

static __always_inline void count_bind(const struct event *e)
{
	struct bind_key key = {};

	key.af = e->af;
	key.port = e->port;
	__builtin_memcpy(key.addr, e->addr, 16);
	tk_map_increment(&counts, &key, &keys_dropped);
}

/* Before 6.6 the IP_* socket options were bitfields of inet_sock; CO-RE picks the layout. */
struct inet_sock___old {
	__u8 freebind: 1;
	__u8 transparent: 1;
	__u8 bind_address_no_port: 1;
} __attribute__((preserve_access_index));

/* The inet_flags bit numbers (include/net/inet_sock.h, 6.6+; an anonymous enum, so no CO-RE) */
#define TK_INET_FLAGS_FREEBIND          11
#define TK_INET_FLAGS_TRANSPARENT       15
#define TK_INET_FLAGS_BIND_ADDRESS_NO_PORT 18

static __always_inline __u8 sock_opts(const struct sock *sk)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;
	__u8 opts = 0;

	if (bpf_core_field_exists(inet->inet_flags)) {
		unsigned long flags = BPF_CORE_READ(inet, inet_flags);

		if (flags & (1UL << TK_INET_FLAGS_FREEBIND))
			opts |= OPT_FREEBIND;
		if (flags & (1UL << TK_INET_FLAGS_TRANSPARENT))
			opts |= OPT_TRANSPARENT;
		if (flags & (1UL << TK_INET_FLAGS_BIND_ADDRESS_NO_PORT))
			opts |= OPT_BIND_NO_PORT;
	} else {
		const struct inet_sock___old *old = (const void *)sk;

		if (BPF_CORE_READ_BITFIELD_PROBED(old, freebind))
			opts |= OPT_FREEBIND;
		if (BPF_CORE_READ_BITFIELD_PROBED(old, transparent))
			opts |= OPT_TRANSPARENT;
		if (BPF_CORE_READ_BITFIELD_PROBED(old, bind_address_no_port))
			opts |= OPT_BIND_NO_PORT;
	}
	if (BPF_CORE_READ_BITFIELD_PROBED(&sk->__sk_common, skc_reuse))
		opts |= OPT_REUSEADDR;
	if (BPF_CORE_READ_BITFIELD_PROBED(&sk->__sk_common, skc_reuseport))
		opts |= OPT_REUSEPORT;
	return opts;
}

/* The struct sock of the current task's descriptor `fd`, or NULL. */
static __always_inline const struct sock *fd_sock(__u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
	struct socket *sock;
	struct file *file = NULL;

	if (fd >= max)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	/* private_data is a socket only for socket files: a socket points back to its file */
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

SEC("tracepoint/syscalls/sys_enter_bind")
int tracepoint__syscalls__sys_enter_bind(struct trace_event_raw_sys_enter *ctx)
{
	struct args_t args = {};
	__u32 tgid, tid;

	tk_current_ids(&tgid, &tid);
	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (tk_uid_filter_set(targ_uid) && tk_current_uid() != targ_uid)
		return 0;
	if (!tk_cgroup_allowed() || !tk_cgroupmap_allowed() || !tk_mntns_allowed())
		return 0;
	args.fd = ctx->args[0];
	args.uaddr = ctx->args[1];
	bpf_map_update_elem(&start, &tid, &args, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int tracepoint__syscalls__sys_exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	struct sockaddr_in6 sa = {};
	const struct sock *sk;
	struct args_t *args;
	struct event ev, *e = &ev;
	__u32 tgid, tid;
	__u16 family;
	int ret = ctx->ret;

	tk_current_ids(&tgid, &tid);
	args = bpf_map_lookup_elem(&start, &tid);
	if (!args)
		return 0;
	/* not a socket at all: nothing to say about it */
	if (ret == -EBADF || ret == -ENOTSOCK)
		goto cleanup;
	if (ignore_errors && ret < 0)
		goto cleanup;
	sk = fd_sock(args->fd);
	if (!sk)
		goto cleanup;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		goto cleanup;
	/* sockaddr_in and sockaddr_in6 share family and port; a short address reads as zeros */
	if (bpf_probe_read_user(&sa, sizeof(sa), (void *)args->uaddr))
		bpf_probe_read_user(&sa, sizeof(struct sockaddr_in), (void *)args->uaddr);

	/* built on the stack: it is either counted (count_mode) or sent */
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->uid = tk_current_uid();
	e->ret = ret;
	e->af = family;
	e->proto = BPF_CORE_READ(sk, sk_protocol);
	e->opts = sock_opts(sk);
	e->bound_dev_if = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	/* bound: the kernel's port (its pick for port 0); failed: the port asked for */
	e->port = ret == 0 ? BPF_CORE_READ(sk, __sk_common.skc_num) : tk_ntohs(sa.sin6_port);
	if (family == AF_INET)
		__builtin_memcpy(e->addr, &((struct sockaddr_in *)&sa)->sin_addr, 4);
	else
		__builtin_memcpy(e->addr, &sa.sin6_addr, 16);
	if (count_mode) {
		count_bind(e);
		goto cleanup;
	}
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	if (!tk_ringbuf_output_or_drop(events, e, sizeof(*e)))
		tk_count(events_emitted);
cleanup:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
