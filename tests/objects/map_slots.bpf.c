// Maps declared with initial `values` (a map-in-map and a prog array for tail calls) and a
// map pinned by name, shared between two loads. raw_tp programs without a target: run
// with BPF_PROG_TEST_RUN (SEC("syscall") programs are sleepable and cannot use these maps).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define LIBBPF_PIN_BY_NAME 1

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner inner_a SEC(".maps");
struct inner inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

int tail_a(void *ctx);
int tail_b(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_a, [3] = (void *)&tail_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tk_shared_counts SEC(".maps");

__u64 result = 0;

static void bump(__u32 slot, __u64 add)
{
	__u32 zero = 0;
	void *inner = bpf_map_lookup_elem(&outer, &slot);
	__u64 *v;

	if (!inner)
		return;
	v = bpf_map_lookup_elem(inner, &zero);
	if (v)
		__sync_fetch_and_add(v, add);
}

SEC("raw_tp")
int tail_a(void *ctx)
{
	bump(0, 1);
	result = 100;
	return 0;
}

SEC("raw_tp")
int tail_b(void *ctx)
{
	bump(2, 10);
	result = 200;
	return 0;
}

SEC("raw_tp")
int entry(void *ctx)
{
	__u32 key = 7;
	__u64 one = 1, *c = bpf_map_lookup_elem(&tk_shared_counts, &key);

	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(&tk_shared_counts, &key, &one, BPF_ANY);
	bpf_tail_call(ctx, &jumps, result == 100 ? 3 : 1);
	return 1;   /* only reached if the tail call failed */
}

char LICENSE[] SEC("license") = "GPL";
