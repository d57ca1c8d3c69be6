// USDT programs for tests/live/test_usdt.py, written for libbpf (SEC("usdt"), <bpf/usdt.bpf.h>)
// and loaded unchanged by tracekit.  tk_any records every argument of whatever probe it is
// attached to in the hits slot named by its USDT cookie (bpf_usdt_cookie()); tk_regs uses the
// BPF_USDT() macro with typed arguments.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

#define SLOTS 8

struct hit {
	__s64 args[BPF_USDT_MAX_ARG_CNT];
	__s32 err[BPF_USDT_MAX_ARG_CNT];
	__u64 count;
	__s64 arg_cnt;
	__u64 cookie;
	__u64 ip;
	__s32 bad_arg; /* bpf_usdt_arg() of an index past arg_cnt: must be -ENOENT */
	__u32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct hit);
} hits SEC(".maps");

SEC("usdt")
int tk_any(struct pt_regs *ctx)
{
	__u32 slot = (__u64)bpf_usdt_cookie(ctx) % SLOTS;
	struct hit *h = bpf_map_lookup_elem(&hits, &slot);
	long v;
	int i, n;

	if (!h)
		return 0;
	n = bpf_usdt_arg_cnt(ctx);
	h->arg_cnt = n;
	for (i = 0; i < BPF_USDT_MAX_ARG_CNT; i++) {
		if (i >= n)
			break;
		h->err[i] = bpf_usdt_arg(ctx, i, &v);
		h->args[i] = v;
	}
	h->bad_arg = bpf_usdt_arg(ctx, n, &v);
	h->cookie = bpf_usdt_cookie(ctx);
	h->ip = PT_REGS_IP(ctx);
	h->pid = bpf_get_current_pid_tgid() >> 32;
	__sync_fetch_and_add(&h->count, 1);
	return 0;
}

__s64 regs_x, regs_y, regs_c;
__u64 regs_z, regs_hits;

SEC("usdt")
int BPF_USDT(tk_regs, int x, long y, unsigned char z, int c)
{
	regs_x = x;
	regs_y = y;
	regs_z = z;
	regs_c = c;
	regs_hits++;
	return 0;
}
