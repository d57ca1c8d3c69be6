// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * ringbuf_producer: an in-kernel ring buffer producer for benchmarks.
 *
 * A SEC("syscall") program, run on demand with BPF_PROG_TEST_RUN, that writes
 * ctx->nr records of 48 bytes into the `records` ring buffer with bpf_loop.  No tracing
 * hook is involved, so the figure measures the ring buffer alone.  Submissions skip the
 * wakeup (BPF_RB_NO_WAKEUP): the consumer polls after the run, nobody sleeps on epoll.
 * Shared by the libbpf baseline (ringbuf_baseline.c) and tracekit's benchmarks.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct record {
	__u64 seq;
	__u64 payload[5];
};                       /* 48 bytes */

/* tracekit's event-type marker: puts struct record in BTF for decoding readers. */
struct record *__event_records __attribute__((unused));

struct run_args {
	__u64 nr;            /* records to produce in this run */
};

/* Totals over all runs, read by user space from the .bss map. */
__u64 produced = 0;
__u64 dropped = 0;       /* ring buffer full: the consumer fell behind */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024 * 1024);   /* user space may resize before load */
} records SEC(".maps");

static long produce_one(__u32 i, void *ctx)
{
	struct record *r;

	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		dropped++;
		return 1;    /* full: stop this run, the counter says how far it got */
	}
	r->seq = i;
	r->payload[0] = i;
	r->payload[1] = ~(__u64)i;
	r->payload[2] = 0;
	r->payload[3] = 0;
	r->payload[4] = 0;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	produced++;
	return 0;
}

SEC("syscall")
int produce(struct run_args *args)
{
	__u64 nr = args->nr;

	if (nr > (1 << 23))          /* bpf_loop's limit */
		nr = 1 << 23;
	bpf_loop(nr, produce_one, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
