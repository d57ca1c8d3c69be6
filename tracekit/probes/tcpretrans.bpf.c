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

__u64 events_emitted = 0;
TK_DROP_COUNTER(events);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

/* Fill the address part of `e` from the socket itself (the loss-probe path has no tracepoint). */
static __always_inline void sock_ends(struct event *e, const struct sock *sk)
{
	e->af = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = tk_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	tk_sock_addrs(sk, e->af, e->saddr, e->daddr);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tracepoint__tcp__tcp_retransmit_skb(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	const struct sk_buff *skb = ctx->skbaddr;
	const struct tcp_skb_cb *cb;
	struct event *e;

	if (targ_family && ctx->family != targ_family)
		return 0;
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->type = RETRANSMIT;
	e->state = ctx->state;
	e->af = ctx->family;
	e->lport = ctx->sport;          /* host order in the tracepoint */
	e->dport = ctx->dport;
	/* (probe reads: the verifier takes only constant-offset loads from a ctx) */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	/* TCP_SKB_CB(skb) is skb->cb seen as struct tcp_skb_cb; CO-RE finds cb and seq */
	cb = (const struct tcp_skb_cb *)((const void *)skb + bpf_core_field_offset(struct sk_buff, cb));
	e->seq = BPF_CORE_READ(cb, seq);
	bpf_ringbuf_submit(e, 0);
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
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->type = TLP;
	sock_ends(e, sk);
	bpf_ringbuf_submit(e, 0);
	tk_count(events_emitted);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
