// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * syscount: count syscalls (and optionally their latency) per syscall or per process.
 *
 * raw_syscalls:sys_exit sees every syscall's number and result, so counting needs only
 * it; raw_syscalls:sys_enter is loaded only for latency (-L), which pairs the two by
 * thread.  Both tracepoints exist since 4.7 on every architecture, so there is no
 * fallback chain.  Counts live in a hash map that user space reads and empties once per
 * interval (BPF_MAP_LOOKUP_AND_DELETE_BATCH: an update racing with the read lands in
 * this interval or the next, never lost).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "syscount.h"

const volatile __u32 filter_pid = 0;        /* process id (tgid), 0: any */
const volatile __u32 filter_tid = 0;        /* thread id, 0: any */
const volatile __u32 filter_ppid = 0;       /* parent's tgid (BCC's -c/--ppid), 0: any */
const volatile bool filter_failed = false;  /* only syscalls returning < 0 */
const volatile __s32 filter_errno = 0;      /* only syscalls returning -filter_errno */
const volatile __s32 filter_syscall = -1;   /* only this syscall number */
const volatile bool measure_latency = false;
const volatile bool count_by_process = false;

/* data updates that found the map full: the report is short by this many syscalls */
__u64 tk_dropped_data = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);             /* thread id */
	__type(value, __u64);           /* bpf_ktime_get_ns() at sys_enter */
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);             /* syscall number, or tgid with count_by_process */
	__type(value, struct data_t);
} data SEC(".maps");

static __always_inline bool allowed(__u32 tgid, __u32 tid)
{
	struct task_struct *task;

	if (filter_pid && filter_pid != tgid)
		return false;
	if (filter_tid && filter_tid != tid)
		return false;
	if (filter_ppid) {
		task = (struct task_struct *)bpf_get_current_task();
		if (BPF_CORE_READ(task, real_parent, tgid) != filter_ppid)
			return false;
	}
	return true;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid, tid;
	__u64 ts;

	if (!measure_latency)
		return 0;
	tk_current_ids(&tgid, &tid);
	if (!allowed(tgid, tid))
		return 0;
	if (filter_syscall >= 0 && ctx->id != filter_syscall)
		return 0;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &tid, &ts, BPF_ANY);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	static const struct data_t zero = {};
	struct task_struct *task;
	struct data_t *val;
	__u64 *startp, delta = 0;
	__u32 tgid, tid, key;
	long id = ctx->id, ret = ctx->ret;

	/* id -1: a syscall restarted or ended by exec/exit bookkeeping, not a real call */
	if (id < 0)
		return 0;
	tk_current_ids(&tgid, &tid);
	if (!allowed(tgid, tid))
		return 0;
	if (filter_syscall >= 0 && id != filter_syscall)
		return 0;
	if (measure_latency) {
		startp = bpf_map_lookup_elem(&start, &tid);
		if (!startp)
			return 0;   /* entered before we attached: no latency to add */
		delta = bpf_ktime_get_ns() - *startp;
		bpf_map_delete_elem(&start, &tid);
	}
	if (filter_failed && ret >= 0)
		return 0;
	if (filter_errno && ret != -filter_errno)
		return 0;

	key = count_by_process ? tgid : (__u32)id;
	val = bpf_map_lookup_elem(&data, &key);
	if (!val) {
		if (bpf_map_update_elem(&data, &key, &zero, BPF_NOEXIST) && bpf_map_lookup_elem(&data, &key) == NULL) {
			tk_count(tk_dropped_data);
			return 0;
		}
		val = bpf_map_lookup_elem(&data, &key);
		if (!val)
			return 0;
		if (count_by_process) {
			task = (struct task_struct *)bpf_get_current_task();
			BPF_CORE_READ_STR_INTO(&val->comm, task, group_leader, comm);
		}
	}
	__sync_fetch_and_add(&val->count, 1);
	if (measure_latency)
		__sync_fetch_and_add(&val->total_ns, delta);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
