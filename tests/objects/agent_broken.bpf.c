// A probe that loads but whose second program cannot attach (no such tracepoint): the
// agent must report it and keep the other configs running.
#include "agent_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} agent_broken_hits SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int broken_ok(struct trace_event_raw_sys_enter *ctx)
{
	if (agent_value(ctx) < 0)
		return 0;
	__u32 zero = 0;
	__u64 *p = bpf_map_lookup_elem(&agent_broken_hits, &zero);
	if (p)
		__sync_fetch_and_add(p, 1);
	return 0;
}

SEC("tracepoint/tracekit_agent_test/no_such_event")
int broken_attach(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
