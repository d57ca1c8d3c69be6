// One map of every type the loader creates, with BTF key/value types of every shape the
// typed view decodes (ints, structs with char arrays, byte arrays, int arrays, bitfields,
// nested structs, enums).  raw_tp programs without a target, run with BPF_PROG_TEST_RUN:
// `check` reads what user space wrote and folds it into .bss so the test sees that user
// space encoded the C layout; `fill` writes values from the kernel side for the decoder.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

enum color { RED = 1, GREEN = 2, BLUE = 40 };

struct inner {
	__u16 a;
	__s8 b;
};

struct val {
	__u64 count;
	__u32 pid;
	char comm[16];
	__s32 delta;
	__u8 tag[3];
	__u16 arr[4];
	struct inner in;
	enum color color;
	__u32 lo : 3, mid : 7, hi : 22;
};

struct skey {
	__u32 pid;
	char comm[12];
};

struct pair {
	__u64 a;
	__u32 b;   /* 12 bytes of data, 16 with padding: per-CPU stride 16 */
};

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} h_u32 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct val);
} a_struct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct skey);
	__type(value, struct val);
} h_struct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} pc_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct pair);
} pc_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32);
	__type(key, __u64);
	__type(value, __s32);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 32);
	__type(key, __u32);
	__type(value, __u32);
} lru_pc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u32);
} lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, char[16]);
} h_str SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32[4]);
} h_arr SEC(".maps");

/* sum of what `check` read from a_struct[1]; -1 if the element was missing */
__s64 checksum = 0;
__u64 lpm_hit = 0;

SEC("raw_tp")
int check(void *ctx)
{
	__u32 one = 1;
	struct val *v = bpf_map_lookup_elem(&a_struct, &one);
	struct lpm_v4 probe = { .prefixlen = 32, .addr = { 10, 1, 2, 3 } };
	__u32 *hit;
	__s64 s = 0;
	int i;

	if (!v) {
		checksum = -1;
		return 0;
	}
	s += v->count + v->pid + v->delta;
	for (i = 0; i < 16; i++)
		s += v->comm[i] * (i + 1);
	for (i = 0; i < 3; i++)
		s += v->tag[i] * 1000;
	for (i = 0; i < 4; i++)
		s += v->arr[i] * (i + 7);
	s += v->in.a * 3 + v->in.b * 5 + v->color * 11;
	s += v->lo * 13 + v->mid * 17 + (__s64)v->hi * 19;
	checksum = s;
	hit = bpf_map_lookup_elem(&lpm, &probe);
	lpm_hit = hit ? *hit : 0;
	return 0;
}

SEC("raw_tp")
int fill(void *ctx)
{
	struct skey k = { .pid = 4242, .comm = "kernel" };
	struct val v = {
		.count = 0x1122334455667788ULL, .pid = 7, .comm = "from-bpf", .delta = -5,
		.tag = { 1, 2, 3 }, .arr = { 10, 20, 30, 40 }, .in = { .a = 65535, .b = -128 },
		.color = BLUE, .lo = 5, .mid = 100, .hi = 4000000,
	};
	__u32 key = 3;
	__u64 *c, one = 1;

	bpf_map_update_elem(&h_struct, &k, &v, BPF_ANY);
	c = bpf_map_lookup_elem(&pc_hash, &key);
	if (c)
		*c += 1;
	else
		bpf_map_update_elem(&pc_hash, &key, &one, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
