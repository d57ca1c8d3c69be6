// Subprogram linking: static and global subprograms, nested and shared calls, a bpf_loop
// callback, and map / global-data references from every level.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

const volatile __u64 scale = 3;
__u64 total = 0;
__u64 seeded = 11;
static __u64 hidden_static;

static __noinline __u64 leaf(__u64 v)
{
	return v * scale + seeded;
}

static __noinline __u64 middle(__u64 v)
{
	hidden_static += v;
	return leaf(v) + leaf(v + 1);
}

__noinline int global_helper(int x)
{
	__u32 key = x & 63;
	__u64 one = 1, *c = bpf_map_lookup_elem(&counts, &key);

	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
	return (int)middle(x);
}

static int loop_cb(__u32 index, void *ctx)
{
	total += leaf(index);
	return 0;
}

SEC("raw_tp/sys_enter")
int first_prog(void *ctx)
{
	bpf_loop(4, loop_cb, NULL, 0);
	return global_helper(1) + (int)middle(2);
}

SEC("raw_tp/sys_exit")
int second_prog(void *ctx)
{
	return (int)leaf(5) + global_helper(7);
}

SEC("raw_tp/sys_exit")
int third_prog_same_section(void *ctx)
{
	total++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
