// SPDX-License-Identifier: GPL-2.0
/*
 * kfuncs of nf_conntrack.ko, called from XDP (the program type they are registered for):
 * look a TCP flow up (absent), create and insert it, then find it in both directions.
 * The 4-tuple comes from the packet BPF_PROG_TEST_RUN hands in.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "module_common.h"

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___tk *opts,
					 __u32 opts__sz) __ksym;
extern struct nf_conn___init *bpf_xdp_ct_alloc(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *tuple,
					       __u32 tuple__sz, struct bpf_ct_opts___tk *opts,
					       __u32 opts__sz) __ksym;
extern struct nf_conn *bpf_ct_insert_entry(struct nf_conn___init *nfct) __ksym;
extern void bpf_ct_release(struct nf_conn *nfct) __ksym;

#define TK_ETH_P_IP 0x0800

int parsed = 0;
int first_found = -1, first_error = 1;
int alloc_error = 1, inserted = 0;
__u64 inserted_status = 0;
int again_found = 0, again_dir = -1, again_error = 1;
int reply_found = 0, reply_dir = -1;

static __always_inline void opts_init(struct bpf_ct_opts___tk *o)
{
	__builtin_memset(o, 0, sizeof(*o));
	o->netns_id = TK_CURRENT_NETNS;
	o->l4proto = IPPROTO_TCP;
	o->dir = 0xff;
}

SEC("xdp")
int ct_flow(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	struct bpf_sock_tuple tup = {}, rev = {};
	struct bpf_ct_opts___tk opts;
	struct nf_conn___init *fresh;
	struct nf_conn *ct;

	if ((void *)(tcp + 1) > end)
		return XDP_ABORTED;
	if (eth->h_proto != bpf_htons(TK_ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
		return XDP_ABORTED;
	parsed = 1;
	tup.ipv4.saddr = ip->saddr;
	tup.ipv4.daddr = ip->daddr;
	tup.ipv4.sport = tcp->source;
	tup.ipv4.dport = tcp->dest;
	rev.ipv4.saddr = ip->daddr;
	rev.ipv4.daddr = ip->saddr;
	rev.ipv4.sport = tcp->dest;
	rev.ipv4.dport = tcp->source;

	opts_init(&opts);
	ct = bpf_xdp_ct_lookup(ctx, &tup, sizeof(tup.ipv4), &opts, TK_CT_OPTS_SZ);
	if (ct) {
		first_found = 1;
		bpf_ct_release(ct);
		return XDP_DROP;
	}
	first_found = 0;
	first_error = opts.error;

	opts_init(&opts);
	fresh = bpf_xdp_ct_alloc(ctx, &tup, sizeof(tup.ipv4), &opts, TK_CT_OPTS_SZ);
	if (!fresh) {
		alloc_error = opts.error;
		return XDP_DROP;
	}
	alloc_error = 0;
	ct = bpf_ct_insert_entry(fresh);
	if (!ct)
		return XDP_DROP;
	inserted = 1;
	inserted_status = ct->status;
	bpf_ct_release(ct);

	opts_init(&opts);
	ct = bpf_xdp_ct_lookup(ctx, &tup, sizeof(tup.ipv4), &opts, TK_CT_OPTS_SZ);
	if (!ct) {
		again_error = opts.error;
		return XDP_DROP;
	}
	again_found = 1;
	again_dir = opts.dir;
	again_error = opts.error;
	bpf_ct_release(ct);

	opts_init(&opts);
	ct = bpf_xdp_ct_lookup(ctx, &rev, sizeof(rev.ipv4), &opts, TK_CT_OPTS_SZ);
	if (!ct)
		return XDP_DROP;
	reply_found = 1;
	reply_dir = opts.dir;
	bpf_ct_release(ct);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
