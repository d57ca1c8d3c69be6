// cgroup_id_map: the agent fills agent_cgroups with the cgroups its regexps match; seeks
// from those cgroups are counted by cgroup id (cgroup decoder).  A knob (.rodata) scales
// the count, for the Python-declared probe test.
#include "agent_common.h"

const volatile __u64 weight = 1;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} agent_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} agent_cg_seeks SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int cg_seeks(struct trace_event_raw_sys_enter *ctx)
{
	if (agent_value(ctx) < 0)
		return 0;
	__u64 cg = bpf_get_current_cgroup_id();
	if (!bpf_map_lookup_elem(&agent_cgroups, &cg))
		return 0;
	add(&agent_cg_seeks, &cg, weight);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
