// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpconnect: active TCP connects (connect() that sent a SYN), with addresses and ports.
 *
 * BCC and libbpf-tools hook tcp_v4_connect/tcp_v6_connect with kprobes, which some
 * kernels lack.  Tracepoints see the same thing: tcp_v{4,6}_connect() moves the socket
 * to SYN_SENT in the connecting thread (sock:inet_sock_set_state, 4.16+), and the
 * connect() syscall returns in that thread (syscalls:sys_exit_connect).  The state change
 * remembers the socket per thread; the syscall exit reports it, because only then is the
 * local port known: it is picked (inet_hash_connect) after the state change.  Like
 * BCC's kretprobe, any connect that sent a SYN is reported, whether or not anyone
 * answers (a closed port gives a row with ret -ECONNREFUSED for a blocking connect).
 *
 * Connects that do not return through connect(2) (io_uring, TCP fast open via
 * sendto/sendmsg, in-kernel users) are not seen.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "tk_inet.h"
#include "tcpconnect.h"

/* Filters set before load (libbpf-tools naming); 0 / INVALID_UID mean "any". */
const volatile __u32 targ_tgid = 0;
const volatile __u32 targ_uid = INVALID_UID;
const volatile __u16 targ_family = 0;    /* AF_INET, AF_INET6 or 0 */
/* count per flow in `counts` instead of sending events (BCC's -c); count_lport keys by LPORT too */
const volatile bool count_mode = false;
const volatile bool count_lport = false;

/* --cgroup / --cgroupmap / --mntnsmap (Probe(cgroup=, cgroupmap=, mntnsmap=)) */
TK_DECLARE_CGROUP_FILTER();
TK_DECLARE_CGROUPMAP_FILTER();
TK_DECLARE_MNTNS_FILTER();

__u64 events_emitted = 0;
TK_DROP_COUNTER(events);

struct {
	/* LRU: a thread whose connect never returns through connect(2) must not pin a slot */
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);                     /* thread id */
	__type(value, __u64);                   /* struct sock * in SYN_SENT */
} connecting SEC(".maps");

/*
 * The ends of a connect as they were when the socket left SYN_SENT.  A refused blocking
 * connect is disconnected (addresses and ports zeroed, tcp_disconnect) before connect()
 * returns, so the exit reads this copy instead of the socket.
 */
struct snapshot {
	__u16 family;
	__u16 sport;            /* host order; 0 while no port was picked */
	__u16 dport;
	__u16 left;             /* 1 once the socket left SYN_SENT */
	__u8 saddr[16];
	__u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);                     /* struct sock * */
	__type(value, struct snapshot);
} snapshots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct flow);
	__type(value, __u64);
} counts SEC(".maps");

__u64 flows_dropped = 0;    /* count_mode: `counts` full, a new flow not counted */

static __always_inline void count_flow(const struct event *e)
{
	struct flow key = {};

	key.af = e->af;
	key.dport = e->dport;
	key.lport = count_lport ? e->lport : 0;
	__builtin_memcpy(key.saddr, e->saddr, 16);
	__builtin_memcpy(key.daddr, e->daddr, 16);
	tk_map_increment(&counts, &key, &flows_dropped);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tracepoint__sock__inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	static const struct snapshot empty = {};
	__u64 sk = (__u64)ctx->skaddr;
	struct snapshot *snap;
	__u32 tgid, tid;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->oldstate == TCP_SYN_SENT) {
		/* any context (a RST arrives in softirq): keep the ends of a socket we follow */
		snap = bpf_map_lookup_elem(&snapshots, &sk);
		if (!snap)
			return 0;
		snap->family = ctx->family;
		snap->sport = ctx->sport;
		snap->dport = ctx->dport;
		snap->left = 1;
		/* (probe reads: the verifier takes only constant-offset loads from a ctx) */
		if (ctx->family == AF_INET) {
			bpf_probe_read_kernel(snap->saddr, 4, ctx->saddr);
			bpf_probe_read_kernel(snap->daddr, 4, ctx->daddr);
		} else {
			bpf_probe_read_kernel(snap->saddr, 16, ctx->saddr_v6);
			bpf_probe_read_kernel(snap->daddr, 16, ctx->daddr_v6);
		}
		return 0;
	}
	if (ctx->newstate != TCP_SYN_SENT)
		return 0;
	if (targ_family && ctx->family != targ_family)
		return 0;
	tk_current_ids(&tgid, &tid);
	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (tk_uid_filter_set(targ_uid) && tk_current_uid() != targ_uid)
		return 0;
	/* SYN_SENT runs in the connecting task: its cgroup and mount namespace are the caller's */
	if (!tk_cgroup_allowed() || !tk_cgroupmap_allowed() || !tk_mntns_allowed())
		return 0;
	bpf_map_update_elem(&snapshots, &sk, &empty, BPF_ANY);
	bpf_map_update_elem(&connecting, &tid, &sk, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tracepoint__syscalls__sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	const struct sock *sk;
	struct event ev, *e = &ev;
	__u32 tgid, tid;
	struct snapshot *snap;
	__u64 *skp;
	__u16 dport;

	tk_current_ids(&tgid, &tid);
	skp = bpf_map_lookup_elem(&connecting, &tid);
	if (!skp)
		return 0;
	sk = (const struct sock *)*skp;

	snap = bpf_map_lookup_elem(&snapshots, skp);
	/*
	 * Still connecting or connected: the socket has both ends.  Otherwise use the copy
	 * taken when it left SYN_SENT; with no local port in it, tcp_v{4,6}_connect() failed
	 * before sending a SYN (no port left, no route) and, as for BCC's kretprobe, there is
	 * nothing to report.
	 */
	dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	if (!dport && (!snap || !snap->left || !snap->sport))
		goto cleanup;
	/* built on the stack: it is either counted (count_mode) or sent */
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->uid = tk_current_uid();
	e->ret = ctx->ret;
	if (dport) {
		e->af = BPF_CORE_READ(sk, __sk_common.skc_family);
		/* inet_sport: the port the SYN went from (skc_num is 0 once out of the bind hash) */
		e->lport = tk_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
		e->dport = tk_ntohs(dport);
		tk_sock_addrs(sk, e->af, e->saddr, e->daddr);
	} else if (snap) {
		e->af = snap->family;
		e->lport = snap->sport;
		e->dport = snap->dport;
		__builtin_memcpy(e->saddr, snap->saddr, 16);
		__builtin_memcpy(e->daddr, snap->daddr, 16);
	}
	if (count_mode) {
		count_flow(e);
		goto cleanup;
	}
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	if (!tk_ringbuf_output_or_drop(events, e, sizeof(*e)))
		tk_count(events_emitted);
cleanup:
	bpf_map_delete_elem(&snapshots, skp);
	bpf_map_delete_elem(&connecting, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
