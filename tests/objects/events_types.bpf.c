// Event layouts for tests/unit/test_events.py: every C construct the decoder handles.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

enum color { RED = 1, GREEN = 2, BLUE = -3 };
enum big { BIG_A = 0x1ffffffffULL };

struct point { int x; short y; };  // 8 bytes: 2 bytes of tail padding

struct inner {
	__u8 tag;            // 0, then 7 bytes of padding
	__u64 value;         // 8
	char label[6];       // 16
};                       // size 24

union payload {
	__u32 word;
	__u8 bytes[4];
	struct point pt;     // union size 8
};

struct event {
	__u32 pid;           // 0
	__s32 err;           // 4
	__u64 ts;            // 8
	__s64 delta;         // 16
	char comm[16];       // 24
	struct inner in;     // 40
	struct point pts[2]; // 64
	union payload pl;    // 80
	__u16 flags : 3;     // 88, bits 0..2
	__s16 level : 5;     // bits 3..7
	__u16 mode : 8;      // bits 8..15
	enum color color;    // 92
	__u8 raw[3];         // 96
	__u32 nums[3];       // 100
	char names[2][4];    // 112
	union {              // anonymous union at 120
		__u32 a32;
		__u16 a16;
	};
	struct {             // anonymous struct at 124
		__u8 s1;
		__u8 s2;
	};
	bool ok;             // 126
	enum big big;        // 128
};                       // size 136

struct seq_event { __u64 seq; __u64 k[5]; };  // tests/live/ringbuf_producer.py records (48 bytes)

struct small_event { __u64 ts; __u32 pid; __u32 cpu; char comm[16]; __u64 a; __u64 b; }; // 48

/* Markers: globals make clang emit the types' BTF (a local variable's type alone is not
 * emitted); tracekit's convention names them __event_<map>. */
struct event *__event_events __attribute__((unused));
struct small_event *__event_small __attribute__((unused));
struct seq_event *__event_seq __attribute__((unused));
union payload *unused_payload __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("syscall")
int produce(void *ctx)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = 1;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
