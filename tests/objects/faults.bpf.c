// Programs for tests/live/test_faults.py: one object that touches every fd-creating step
// of tracekit (BTF, maps of several kinds, programs, a tracepoint link, a uprobe, a ring
// buffer reader and a perf buffer reader), with names no other test uses, so that kernel
// objects left behind by a killed process can be found by name.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct event {
	__u32 pid;
	__u32 kind;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} tk_fault_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} tk_fault_perf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tk_fault_hits SEC(".maps");

/* keeps struct event in the BTF for the readers' decoders */
struct event *__event_tk_fault_ring __attribute__((unused));

static __always_inline void hit(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&tk_fault_hits, &kind);

	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tk_fault_tp(void *ctx)
{
	struct event e = { .pid = bpf_get_current_pid_tgid() >> 32, .kind = 0 };

	hit(0);
	bpf_ringbuf_output(&tk_fault_ring, &e, sizeof(e), 0);
	bpf_perf_event_output(ctx, &tk_fault_perf, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

SEC("uprobe")
int tk_fault_up(struct pt_regs *ctx)
{
	hit(1);
	return 0;
}
