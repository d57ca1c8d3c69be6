// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpretrans: TCP retransmissions, from tcp:tcp_retransmit_skb (4.15+), and with the
 * optional kprobe on tcp_send_loss_probe, tail loss probes (no tracepoint exists for
 * those).  Both run in whatever context retransmits, usually a timer: PID is rarely the
 * socket's owner.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "tk_inet.h"
#include "tcpretrans.h"

const volatile __u16 targ_family = 0;   /* AF_INET, AF_INET6 or 0 */
/* user space loads the loss-probe program only when this is set (it needs kprobes) */
const volatile bool lossprobe = false;
/* count per flow in `counts` instead of sending events (BCC's -c) */
const volatile bool count_mode = false;

__u64 events_emitted = 0;
TK_DROP_COUNTER(events);

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
	key.lport = e->lport;
	key.dport = e->dport;
	__builtin_memcpy(key.saddr, e->saddr, 16);
	__builtin_memcpy(key.daddr, e->daddr, 16);
	tk_map_increment(&counts, &key, &flows_dropped);
}

/* Fill the address part of `e` from the socket itself. */
static __always_inline void sock_ends(struct event *e, const struct sock *sk)
{
	e->af = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* inet_sport/inet_dport, as the tracepoint records them */
	e->lport = tk_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	e->dport = tk_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	tk_sock_addrs(sk, e->af, e->saddr, e->daddr);
}

/*
 * The start of tcp:tcp_retransmit_skb's record.  Its event class changed (tcp_event_sk_skb
 * until 6.12; its own class with an err field since), so vmlinux.h's struct for it is not
 * on every kernel and CO-RE has nothing to relocate against there.  The two pointers after
 * the 8-byte common header have been the same since the tracepoint appeared (4.15): take
 * those and read the rest from the socket itself.
 */
struct tk_retransmit_args {
	__u64 common;           /* struct trace_entry */
	const void *skbaddr;
	const void *skaddr;
};

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tracepoint__tcp__tcp_retransmit_skb(struct tk_retransmit_args *ctx)
{
	const struct sk_buff *skb = ctx->skbaddr;
	const struct sock *sk = ctx->skaddr;
	const struct tcp_skb_cb *cb;
	struct event *e;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (targ_family && family != targ_family)
		return 0;
	if (count_mode) {
		struct event flow_ev = {};

		sock_ends(&flow_ev, sk);
		count_flow(&flow_ev);
		return 0;
	}
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->type = RETRANSMIT;
	sock_ends(e, sk);
	/* TCP_SKB_CB(skb) is skb->cb seen as struct tcp_skb_cb; CO-RE finds cb and seq */
	cb = (const struct tcp_skb_cb *)((const void *)skb + bpf_core_field_offset(struct sk_buff, cb));
	e->seq = BPF_CORE_READ(cb, seq);
	tk_ringbuf_submit(events, e);
	tk_count(events_emitted);
	return 0;
}

SEC("kprobe/tcp_send_loss_probe")
int BPF_KPROBE(kprobe__tcp_send_loss_probe, struct sock *sk)
{
	struct event *e;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (!lossprobe)
		return 0;
	if (targ_family && family != targ_family)
		return 0;
	if (count_mode) {
		struct event flow_ev = {};

		sock_ends(&flow_ev, sk);
		count_flow(&flow_ev);
		return 0;
	}
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->type = TLP;
	sock_ends(e, sk);
	tk_ringbuf_submit(events, e);
	tk_count(events_emitted);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
