// Histograms built in the kernel from known inputs: the test sets `value`, `label` and `tag`
// in .bss and runs `observe` with BPF_PROG_TEST_RUN once per input.  Slots are computed in
// BPF in the two usual conventions: BCC's bpf_log2l (floor(log2 v) + 1, 0 and 1 in slot 1)
// and libbpf-tools' log2l (floor(log2 v), clamped to MAX_SLOTS - 1).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SLOTS 27
#define LIN_SLOTS 20
#define LIN_STEP 10

struct pid_slot {
	__u32 pid;
	__u64 slot;  /* BCC-style {label, slot} key; the compiler pads after pid */
};

struct hkey {
	char comm[16];
};

struct hist {
	__u32 slots[MAX_SLOTS];
	__u64 sum;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65);
	__type(key, __u32);
	__type(value, __u64);
} dist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65);
	__type(key, __u32);
	__type(value, __u64);
} pc_dist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LIN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lin SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct pid_slot);
	__type(value, __u64);
} keyed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct hkey);
	__type(value, struct hist);
} hists SEC(".maps");

__u64 value = 0;
__u32 label = 0;
char tag[16] = {};

static __always_inline __u32 floor_log2(__u64 v)
{
	__u32 r = 0;
	int i;

	for (i = 0; i < 64; i++) {
		if (v <= 1)
			break;
		v >>= 1;
		r++;
	}
	return r;
}

static __always_inline void bump(void *map, void *key)
{
	__u64 *c = bpf_map_lookup_elem(map, key), one = 1;

	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("raw_tp")
int observe(void *ctx)
{
	__u64 v = value;
	__u32 bcc_slot = floor_log2(v) + 1;  /* bpf_log2l: 0 and 1 both land in slot 1 */
	__u32 lib_slot = floor_log2(v);
	__u32 lin_slot = v / LIN_STEP;
	struct pid_slot ps = {};
	struct hkey hk = {};
	struct hist *h, zero = {};

	if (lib_slot >= MAX_SLOTS)
		lib_slot = MAX_SLOTS - 1;
	if (lin_slot >= LIN_SLOTS)
		lin_slot = LIN_SLOTS - 1;
	bump(&dist, &bcc_slot);
	bump(&pc_dist, &bcc_slot);
	bump(&lin, &lin_slot);
	ps.pid = label;
	ps.slot = bcc_slot;
	bump(&keyed, &ps);

	__builtin_memcpy(hk.comm, tag, sizeof(hk.comm));
	h = bpf_map_lookup_elem(&hists, &hk);
	if (!h) {
		bpf_map_update_elem(&hists, &hk, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &hk);
		if (!h)
			return 1;
	}
	if (lib_slot < MAX_SLOTS)  /* for the verifier: the index is bounded */
		__sync_fetch_and_add(&h->slots[lib_slot], 1);
	__sync_fetch_and_add(&h->sum, v);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
