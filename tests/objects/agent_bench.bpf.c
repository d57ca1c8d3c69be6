// bench/bench_agent.py: bench_series is filled from user space (10,000 series); the lseek
// program counts the steady-rate workload's events in the kernel (no per-event user work).
#include "agent_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 20000);
	__type(key, __u32);
	__type(value, __u64);
} bench_series SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} bench_events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int bench_seeks(struct trace_event_raw_sys_enter *ctx)
{
	long long v = agent_value(ctx);
	if (v < 0)
		return 0;
	__u32 k = v % 64;
	add(&bench_events, &k, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
