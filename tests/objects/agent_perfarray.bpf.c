// A perf_event_array counter (ebpf_exporter's perf_event_array: true): one record per
// workload seek, {u32 kind; u32 pad; u64 v} of which the labels take the first 4 bytes.
#include "agent_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} agent_pe_seeks SEC(".maps");

struct rec {
	__u32 kind;
	__u32 pad;
	__u64 v;
};

SEC("tracepoint/syscalls/sys_enter_lseek")
int pe_seeks(struct trace_event_raw_sys_enter *ctx)
{
	long long v = agent_value(ctx);
	if (v < 0)
		return 0;
	struct rec r = { .kind = v % 3, .v = v };
	bpf_perf_event_output(ctx, &agent_pe_seeks, BPF_F_CURRENT_CPU, &r, sizeof(r));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
