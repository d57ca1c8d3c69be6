// SPDX-License-Identifier: GPL-2.0
/* Settings a front end makes before load (tests/live/test_loader_settings.py): a
 * stack-trace map sized by user space, a hash turned into another type, and a program
 * in a section only its application knows ("tkcustom/<category>/<name>"). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_STACK_DEPTH 127

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");

__u64 custom_hits = 0;

SEC("tkcustom/syscalls/sys_enter_getppid")
int custom_getppid(void *ctx)
{
	__u32 k = 1;
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &k);

	__sync_fetch_and_add(&custom_hits, 1);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST);
	return 0;
}

SEC("tp_btf/sched_switch")
int tpbtf_switch(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
