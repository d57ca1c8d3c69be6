// Stack sampling for tests/live/test_symbols.py and test_perf_event.py, in the shape of
// BCC's profile: a perf_event program counts samples keyed by (pid, user stack id,
// kernel stack id, build-id user stack id, comm) for one process (target_tgid), and
// counts every sample per CPU.  A second program carries ebpf_exporter's section form.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_DEPTH 127
#define MAX_CPUS 64

struct key_t {
	__u32 pid;
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	__s32 build_id_stack_id;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(struct bpf_stack_build_id));
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
} build_id_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct key_t);
	__type(value, __u64);
} counts SEC(".maps");

const volatile __u32 target_tgid = 0;

__u64 cpu_samples[MAX_CPUS];
__u64 section_samples;

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, cpu = bpf_get_smp_processor_id();
	struct key_t key = {};
	__u64 one = 1, *v;

	if (cpu < MAX_CPUS)
		__sync_fetch_and_add(&cpu_samples[cpu], 1);
	if ((__u32)id == 0 || tgid != target_tgid)
		return 0; /* idle, or another process */
	key.pid = tgid;
	key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	key.kernel_stack_id = bpf_get_stackid(ctx, &stacks, 0);
	key.build_id_stack_id = bpf_get_stackid(ctx, &build_id_stacks, BPF_F_USER_STACK);
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	return 0;
}

/* ebpf_exporter's form: attached by Object.attach() from the section name alone */
SEC("perf_event/type=1,config=0,frequency=199")
int section_sample(struct bpf_perf_event_data *ctx)
{
	__sync_fetch_and_add(&section_samples, 1);
	return 0;
}
