// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * runqlat: scheduler run-queue latency, from a task becoming runnable (wakeup, new
 * task, or preemption while still TASK_RUNNING) until it runs, as log2 histograms.
 *
 * sched_wakeup, sched_wakeup_new and sched_switch are tracepoints on every kernel; the
 * programs come as tp_btf (5.5+) and raw_tp twins and the declaration picks one per hook.
 * The task's state is task->__state since 5.14 (task->state before), read with CO-RE.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "runqlat.h"

#define TASK_RUNNING 0

const volatile bool targ_per_process = false;
const volatile bool targ_per_thread = false;
const volatile bool targ_per_pidns = false;
const volatile bool targ_ms = false;
const volatile __u32 targ_tgid = 0;

__u64 tk_dropped_hists = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);             /* tid */
	__type(value, __u64);           /* bpf_ktime_get_ns() when it became runnable */
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(struct task_struct *t)
{
	struct task_struct___pre514 *old = (void *)t;

	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ(old, state);
}

/*
 * floor(log2 v), clamped to max - 1, as a bounded loop: every exit has a constant
 * slot, which the 6.1 verifier follows (a branch-free log2 plus a clamp made it explore
 * an impossible branch with inconsistent bounds and reject the map access).
 */
static __always_inline __u32 log2_slot(__u64 v, const __u32 max)
{
	__u32 i;

	for (i = 0; i < max - 1; i++) {
		if (v <= 1)
			break;
		v >>= 1;
	}
	return i;
}

static __always_inline void enqueue(struct task_struct *p)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u64 ts;

	if (!tid)
		return;   /* the idle task */
	if (targ_tgid && (__u32)BPF_CORE_READ(p, tgid) != targ_tgid)
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &tid, &ts, BPF_ANY);
}

static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next)
{
	static const struct hist zero = {};
	struct hist *h;
	__u64 *tsp, delta;
	__u32 tid, key = 0, slot;

	/* preempted while runnable: it waits on the run queue from now */
	if (task_state(prev) == TASK_RUNNING)
		enqueue(prev);

	tid = BPF_CORE_READ(next, pid);
	tsp = bpf_map_lookup_elem(&start, &tid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &tid);
	if ((__s64)delta < 0)
		return 0;

	if (targ_per_process)
		key = BPF_CORE_READ(next, tgid);
	else if (targ_per_thread)
		key = tid;
	else if (targ_per_pidns)
		key = BPF_CORE_READ(next, nsproxy, pid_ns_for_children, ns.inum);
	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h) {
			tk_count(tk_dropped_hists);
			return 0;
		}
		bpf_probe_read_kernel_str(&h->comm, sizeof(h->comm), next->comm);
	}
	delta /= targ_ms ? 1000000U : 1000U;
	slot = log2_slot(delta, RUNQLAT_MAX_SLOTS);
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum, delta);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(prev, next);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
