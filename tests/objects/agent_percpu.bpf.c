// Per-CPU maps for the agent tests: one summed over CPUs, one exported with a cpu label,
// and a per-CPU hash keyed by a label plus the cpu label.
#include "agent_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} agent_pc_sum SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} agent_pc_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} agent_pc_hash SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int percpu_seeks(struct trace_event_raw_sys_enter *ctx)
{
	long long v = agent_value(ctx);
	if (v < 0)
		return 0;
	__u32 zero = 0, kind = v % 2;
	__u64 *p = bpf_map_lookup_elem(&agent_pc_sum, &zero);
	if (p)
		*p += 1;
	p = bpf_map_lookup_elem(&agent_pc_cpu, &zero);
	if (p)
		*p += 1;
	p = bpf_map_lookup_elem(&agent_pc_hash, &kind);
	if (p) {
		*p += 1;
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&agent_pc_hash, &kind, &one, BPF_NOEXIST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
