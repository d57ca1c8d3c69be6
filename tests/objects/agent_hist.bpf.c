// Every ebpf_exporter histogram type for the agent tests, from the workload's values v:
// exp2 (with a parity label, microseconds multiplier), exp2zero, linear (step 10), fixed.
#include "agent_common.h"

#define EXP2_MAX 12
#define LIN_MAX 9
#define LIN_STEP 10

struct par_key {
	__u32 parity;
	__u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct par_key);
	__type(value, __u64);
} agent_exp2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXP2_MAX + 2);
	__type(key, __u32);
	__type(value, __u64);
} agent_exp2zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} agent_linear SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} agent_fixed SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int hist_seeks(struct trace_event_raw_sys_enter *ctx)
{
	long long sv = agent_value(ctx);
	if (sv < 0)
		return 0;
	__u64 v = sv;

	struct par_key pk = { .parity = v & 1, .bucket = ceil_log2(v) };
	if (pk.bucket > EXP2_MAX)
		pk.bucket = EXP2_MAX;
	add(&agent_exp2, &pk, 1);
	pk.bucket = EXP2_MAX + 1;  /* the sum key */
	add(&agent_exp2, &pk, v);

	__u32 z = v == 0 ? 0 : ceil_log2(v) + 1;
	if (z > EXP2_MAX)
		z = EXP2_MAX;
	add(&agent_exp2zero, &z, 1);
	z = EXP2_MAX + 1;
	add(&agent_exp2zero, &z, v);

	__u64 l = v / LIN_STEP;
	if (l > LIN_MAX)
		l = LIN_MAX;
	add(&agent_linear, &l, 1);
	l = LIN_MAX + 1;
	add(&agent_linear, &l, v / LIN_STEP);  /* the sum is multiplied back by the agent */

	/* fixed buckets 1, 10, 100, 1000: the smallest key >= v; larger values are not counted */
	__u32 f = v <= 1 ? 1 : v <= 10 ? 10 : v <= 100 ? 100 : v <= 1000 ? 1000 : 0;
	if (f)
		add(&agent_fixed, &f, 1);
	f = 1001;
	add(&agent_fixed, &f, v);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
