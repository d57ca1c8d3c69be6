// Shared by the agent test objects (tests/live/test_agent*.py): the workload is lseek(fd,
// AGENT_MAGIC + v, SEEK_SET) from the test process, so the objects see exactly the values
// the test chose, whatever else runs on the machine.
#pragma once
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define AGENT_MAGIC 0x7a6b00000000ULL
#define AGENT_RANGE (1ULL << 24)

/* v for an lseek of the workload, or -1 */
static __always_inline long long agent_value(struct trace_event_raw_sys_enter *ctx)
{
	unsigned long long off = ctx->args[1];
	if (ctx->args[2] != 0 || off < AGENT_MAGIC || off >= AGENT_MAGIC + AGENT_RANGE)
		return -1;
	return (long long)(off - AGENT_MAGIC);
}

/* ebpf_exporter's exp2 bucket: ceil(log2 v), 0 for v <= 1 */
static __always_inline __u32 ceil_log2(__u64 v)
{
	__u32 r = 0;
	if (v <= 1)
		return 0;
	v -= 1;
	while (v && r < 64) {
		v >>= 1;
		r++;
	}
	return r;
}

static __always_inline void add(void *map, const void *key, __u64 n)
{
	__u64 *p = bpf_map_lookup_elem(map, key);
	if (p) {
		__sync_fetch_and_add(p, n);
		return;
	}
	if (bpf_map_update_elem(map, key, &n, BPF_NOEXIST) == 0)
		return;
	/* another CPU inserted the key first: add ours to its entry */
	p = bpf_map_lookup_elem(map, key);
	if (p)
		__sync_fetch_and_add(p, n);
}
