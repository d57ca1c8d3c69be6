// uprobe.multi / uretprobe.multi programs for tests/live/test_uprobe_multi.py: count calls
// per probed address (calls, keyed by the function's runtime IP), per BPF cookie
// (by_cookie[cookie % 16]) and record return values per cookie (rets).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} calls SEC(".maps");

__u64 by_cookie[16];
__s64 rets[16];
__u64 ret_hits;

SEC("uprobe.multi")
int tk_multi(struct pt_regs *ctx)
{
	__u64 ip = PT_REGS_IP(ctx), one = 1, *n;

	n = bpf_map_lookup_elem(&calls, &ip);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&calls, &ip, &one, BPF_NOEXIST);
	__sync_fetch_and_add(&by_cookie[bpf_get_attach_cookie(ctx) & 15], 1);
	return 0;
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(tk_multi_ret, long ret)
{
	rets[bpf_get_attach_cookie(ctx) & 15] = ret;
	__sync_fetch_and_add(&ret_hits, 1);
	return 0;
}
