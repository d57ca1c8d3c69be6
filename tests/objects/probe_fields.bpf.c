// SPDX-License-Identifier: GPL-2.0
/* A user's own probe for tests/live/test_declarations.py: its record has members named
 * like tuple methods (count, index), and a second ring buffer whose record type is only a
 * local variable, so clang leaves it out of BTF (the missing-event-type error). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tracekit.h"

struct tally {
	__u64 count;
	__u32 index;
	__u32 scale;
	char label[8];
};

struct hidden {
	__u64 a;
	__u64 b;
};

const volatile __u32 scale = 1;
__u64 runs = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} tallies SEC(".maps");
TK_EVENT_TYPE(tallies, struct tally);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} unmarked SEC(".maps");

SEC("syscall")
int emit(void *ctx)
{
	struct tally *t = bpf_ringbuf_reserve(&tallies, sizeof(*t), 0);
	struct hidden h = { .a = 1, .b = 2 };
	__u64 n = __sync_fetch_and_add(&runs, 1) + 1;

	if (t) {
		t->count = n * 10;
		t->index = (__u32)n;
		t->scale = scale;
		__builtin_memcpy(t->label, "tally", 6);
		bpf_ringbuf_submit(t, 0);
	}
	bpf_ringbuf_output(&unmarked, &h, sizeof(h), 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
