// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * funccount: count calls of kernel functions, user functions and tracepoints.
 *
 * BCC generates one program per probe, each bumping its own slot of an array.  A prebuilt
 * object cannot be generated per pattern, so here one program per hook kind is attached
 * many times, each attachment carrying its slot number as the BPF cookie
 * (bpf_get_attach_cookie(), 5.15+): the same array layout with no compiler at run time.
 * The multi-link kinds (kprobe.multi, uprobe.multi) take one cookie per function, so a
 * thousand functions are one link.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "funccount.h"

/* -p PID: only this process (0: all) */
const volatile __u32 targ_tgid = 0;
/* -c CPU: only calls on this CPU (-1: all) */
const volatile __s32 targ_cpu = -1;

/* slot (attach cookie) -> calls; per-CPU so a hot function costs no atomic add */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FUNCCOUNT_MAX_PROBES);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline int count_call(void *ctx)
{
	__u32 slot;
	__u64 *v;

	if (targ_tgid && (bpf_get_current_pid_tgid() >> 32) != targ_tgid)
		return 0;
	if (targ_cpu >= 0 && bpf_get_smp_processor_id() != (__u32)targ_cpu)
		return 0;
	slot = (__u32)bpf_get_attach_cookie(ctx);
	v = bpf_map_lookup_elem(&counts, &slot);
	if (v)
		*v += 1;
	return 0;
}

SEC("kprobe")
int kprobe_count(struct pt_regs *ctx)
{
	return count_call(ctx);
}

SEC("kprobe.multi")
int kprobe_multi_count(struct pt_regs *ctx)
{
	return count_call(ctx);
}

SEC("uprobe")
int uprobe_count(struct pt_regs *ctx)
{
	return count_call(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_count(struct pt_regs *ctx)
{
	return count_call(ctx);
}

SEC("tracepoint")
int tracepoint_count(void *ctx)
{
	return count_call(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
