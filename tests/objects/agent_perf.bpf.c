// ebpf_exporter's perf_event/type=T,config=C,frequency=F section: cpu-clock samples per CPU.
#include "agent_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} agent_perf_samples SEC(".maps");

SEC("perf_event/type=1,config=0,frequency=99")
int on_sample(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	add(&agent_perf_samples, &cpu, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
