// A storm against small buffers, for tests/live/test_lost_events.py and
// tests/live/test_readers_lifetime.py.  Both programs are SEC("raw_tp") without a
// tracepoint name: never attached, run with BPF_PROG_TEST_RUN, whose context is the
// raw tracepoint's u64 args: args[0] = how many records to try to produce.
//
// Every attempt is counted in `produced`; the ring buffer's failures go to
// tk_dropped_events (tracekit.h's drop-counter convention), the perf buffer's are
// counted by the kernel (PERF_RECORD_LOST).  So received + lost == produced, exactly.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tracekit.h"

#define MAX_BURST 4096

struct event {
	__u64 seq;
	__u64 pad[3];
};                       // 32 bytes: 40 with the ring header, ~100 fit in one page

TK_EVENT_TYPE(events, struct event);
TK_EVENT_TYPE(perf_events, struct event);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);   // one page: a burst of more than ~100 records drops
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

TK_DROP_COUNTER(events);
__u64 produced = 0;
__u64 perf_produced = 0;

// bpf_loop(): the verifier checks the callback once, not each of up to MAX_BURST
// iterations of an open-coded loop (which made each load take a quarter of a second).
static long ring_one(__u64 index, void *data)
{
	struct event *e;
	__u64 seq = __sync_fetch_and_add(&produced, 1);

	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		return 0;
	e->seq = seq;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("raw_tp")
int storm_ring(__u64 *args)
{
	bpf_loop(args[0] < MAX_BURST ? args[0] : MAX_BURST, ring_one, NULL, 0);
	return 0;
}

struct perf_loop { void *ctx; };

static long perf_one(__u64 index, struct perf_loop *l)
{
	struct event e = {};

	e.seq = __sync_fetch_and_add(&perf_produced, 1);
	bpf_perf_event_output(l->ctx, &perf_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

SEC("raw_tp")
int storm_perf(__u64 *args)
{
	struct perf_loop l = { .ctx = args };

	bpf_loop(args[0] < MAX_BURST ? args[0] : MAX_BURST, perf_one, &l, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
