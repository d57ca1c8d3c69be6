// Perf-buffer producers for tests/live/test_perfbuf.py: tracepoint programs calling
// bpf_perf_event_output on syscalls the test makes with known arguments.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;

struct event {
	__u32 pid;
	__s32 arg;
	__u64 seq;
	char comm[16];
};

struct big {
	__u64 seq;
	__u8 fill[3000];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

/* keeps struct event in the BTF (it is only a local variable otherwise) */
struct event *__event_events __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct big);
} scratch SEC(".maps");

__u64 seq, big_seq;

/* getpgid(pid): one struct event per call, arg = pid */
SEC("tracepoint/syscalls/sys_enter_getpgid")
int on_getpgid(struct trace_event_raw_sys_enter *ctx)
{
	struct event e = {};

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	e.pid = target_tgid;
	e.arg = (__s32)ctx->args[0];
	e.seq = __sync_fetch_and_add(&seq, 1);
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

/* getppid(): one 3008-byte record per call, to overflow a one-page ring */
SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	__u32 zero = 0;
	struct big *b;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	b = bpf_map_lookup_elem(&scratch, &zero);
	if (!b)
		return 0;
	b->seq = __sync_fetch_and_add(&big_seq, 1);
	b->fill[0] = 0xab;
	b->fill[2999] = 0xcd;
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, b, sizeof(*b));
	return 0;
}
