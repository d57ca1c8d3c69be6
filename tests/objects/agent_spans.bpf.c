// tracing.spans: one ring-buffer record per workload seek, laid out as ebpf_exporter's span
// labels: trace id (16 bytes), parent and span ids (8 bytes each), CLOCK_MONOTONIC start,
// duration, name, and a kind attribute.
#include "agent_common.h"

struct span_rec {
	__u8 trace_id[16];
	__u64 parent_span_id;
	__u64 span_id;
	__u64 start_ns;
	__u64 duration_ns;
	char name[8];
	__u32 kind;  /* + 4 bytes of struct padding */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} agent_spans SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int span_seeks(struct trace_event_raw_sys_enter *ctx)
{
	long long v = agent_value(ctx);
	if (v < 0)
		return 0;
	struct span_rec *r = bpf_ringbuf_reserve(&agent_spans, sizeof(*r), 0);
	if (!r)
		return 0;
	for (int i = 0; i < 15; i++)
		r->trace_id[i] = 0x11;
	r->trace_id[15] = v & 0xff;
	r->parent_span_id = v % 2 ? 0x42 : 0;
	r->span_id = v + 1;
	r->start_ns = bpf_ktime_get_ns();
	r->duration_ns = v * 1000;
	__builtin_memcpy(r->name, "seek\0\0\0", 8);
	r->kind = v % 2;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
