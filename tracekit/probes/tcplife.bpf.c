// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcplife: one record per TCP session when it closes, with its span and byte counts.
 *
 * Everything comes from sock:inet_sock_set_state (4.16+), as in BCC and libbpf-tools:
 * a state below FIN_WAIT1 (SYN_SENT, SYN_RECV, ESTABLISHED) stamps the session's start;
 * SYN_SENT (active open, in connect()) and LAST_ACK (passive close, in close()) run in
 * the owning process, so they name it; CLOSE reports.  Most other changes happen in
 * softirq context under whatever task was running, which is why the owner is cached.
 * Sessions already open when tracing starts have no start stamp and are skipped.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "tk_inet.h"
#include "tcplife.h"

const volatile __u32 targ_tgid = 0;     /* 0: any process */
const volatile __u16 targ_family = 0;   /* AF_INET, AF_INET6 or 0 */

__u64 events_emitted = 0;
TK_DROP_COUNTER(events);

struct ident {
	__u32 pid;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);    /* LRU: a socket freed unseen must not pin a slot */
	__uint(max_entries, 10240);
	__type(key, __u64);                     /* struct sock * */
	__type(value, __u64);                   /* ns */
} birth SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct ident);
} idents SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

SEC("tracepoint/sock/inet_sock_set_state")
int tracepoint__sock__inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr, ts, *start;
	const struct tcp_sock *tp;
	struct ident me = {}, *who;
	struct event *e;
	__u32 tgid, tid;
	int state = ctx->newstate;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (targ_family && ctx->family != targ_family)
		return 0;

	if (state < TCP_FIN_WAIT1) {
		ts = bpf_ktime_get_ns();
		bpf_map_update_elem(&birth, &sk, &ts, BPF_ANY);
	}
	if (state == TCP_SYN_SENT || state == TCP_LAST_ACK) {
		tk_current_ids(&tgid, &tid);
		if (targ_tgid && tgid != targ_tgid)
			return 0;
		me.pid = tgid;
		bpf_get_current_comm(&me.comm, sizeof(me.comm));
		bpf_map_update_elem(&idents, &sk, &me, BPF_ANY);
	}
	if (state != TCP_CLOSE)
		return 0;

	start = bpf_map_lookup_elem(&birth, &sk);
	if (!start)
		goto cleanup;      /* never saw it open (a listener, or older than the probe) */
	ts = *start;
	who = bpf_map_lookup_elem(&idents, &sk);
	if (who) {
		me = *who;
	} else {
		/* no cached owner: the task closing it now is the best guess (BCC does the same) */
		tk_current_ids(&tgid, &tid);
		me.pid = tgid;
		bpf_get_current_comm(&me.comm, sizeof(me.comm));
	}
	if (targ_tgid && me.pid != targ_tgid)
		goto cleanup;

	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		goto cleanup;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->span_ns = e->ts - ts;
	tp = (const struct tcp_sock *)sk;
	e->rx_b = BPF_CORE_READ(tp, bytes_received);
	e->tx_b = BPF_CORE_READ(tp, bytes_acked);
	e->pid = me.pid;
	__builtin_memcpy(e->comm, me.comm, sizeof(e->comm));
	e->af = ctx->family;
	e->lport = ctx->sport;          /* the tracepoint's ports are host order */
	e->dport = ctx->dport;
	/* (probe reads: the verifier takes only constant-offset loads from a ctx) */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	tk_ringbuf_submit(events, e);
	tk_count(events_emitted);
cleanup:
	bpf_map_delete_elem(&birth, &sk);
	bpf_map_delete_elem(&idents, &sk);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
