// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * offcputime: total time threads spend blocked, by stack.
 *
 * At sched_switch the outgoing thread (prev) is still current, so its stacks -- where it
 * blocked -- are taken there and kept with the switch-out time; when the thread is next
 * switched in, the interval is added to the totals of that key (libbpf-tools' approach;
 * BCC hooks finish_task_switch with a kprobe, which this VM and locked-down kernels lack).
 * tp_btf/sched_switch is preferred, raw_tp/sched_switch is the fallback (the same
 * arguments, read through bpf_probe_read_kernel instead of BTF pointers).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "offcputime.h"

#define EFAULT 14
#define PF_KTHREAD 0x00200000

const volatile bool filter_pids = false;         /* -p: only tgids in `pids` */
const volatile bool filter_tids = false;         /* -t: only tids in `tids` */
const volatile bool user_threads_only = false;   /* -u */
const volatile bool kernel_threads_only = false; /* -k */
const volatile bool user_stacks = true;          /* false with -K */
const volatile bool kernel_stacks = true;        /* false with -U */
const volatile __s64 state = -1;                 /* --state MASK (BCC: prev->state & MASK; 0: == 0) */
const volatile __u64 min_block_ns = 1000;        /* -m, in ns */
const volatile __u64 max_block_ns = (__u64)-1;   /* -M, in ns */

__u64 start_full = 0;    /* switch-outs not recorded: `start` full */
__u64 counts_full = 0;   /* intervals not added: `counts` full */

struct internal_key {
	__u64 start_ts;
	struct key_t key;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} tids SEC(".maps");

/* tid -> switch-out time and key (with its stacks) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct internal_key);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);     /* --stack-storage-size */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, OFFCPU_MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

/* key -> total off-CPU microseconds */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 40960);
	__type(key, struct key_t);
	__type(value, __u64);
} counts SEC(".maps");

/* task_struct::state before 5.14 (renamed __state) */
struct task_struct___o {
	volatile long int state;
} __attribute__((preserve_access_index));

static __always_inline __s64 task_state(struct task_struct *t)
{
	struct task_struct___o *old = (void *)t;

	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ(old, state);
}

static __always_inline bool allow(struct task_struct *t)
{
	__u32 tgid = BPF_CORE_READ(t, tgid), tid = BPF_CORE_READ(t, pid);
	__u32 flags;
	__s64 st;

	if (tid == 0)
		return false;   /* the idle task never blocks */
	if (filter_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (filter_tids && !bpf_map_lookup_elem(&tids, &tid))
		return false;
	if (user_threads_only || kernel_threads_only) {
		flags = BPF_CORE_READ(t, flags);
		if (user_threads_only && (flags & PF_KTHREAD))
			return false;
		if (kernel_threads_only && !(flags & PF_KTHREAD))
			return false;
	}
	if (state >= 0) {
		st = task_state(t);
		if (state == 0 ? st != 0 : !(st & state))
			return false;
	}
	return true;
}

static __always_inline int on_switch(void *ctx, struct task_struct *prev, struct task_struct *next)
{
	struct internal_key ik = {}, *ip;
	__u32 tid;
	__u64 now = bpf_ktime_get_ns(), delta, *total, us;
	long err;

	if (allow(prev)) {
		tid = BPF_CORE_READ(prev, pid);
		ik.start_ts = now;
		ik.key.pid = tid;
		ik.key.tgid = BPF_CORE_READ(prev, tgid);
		/* prev is still current here: these are the stacks it blocks in */
		ik.key.user_stack_id = user_stacks ? bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK) : -EFAULT;
		ik.key.kernel_stack_id = kernel_stacks ? bpf_get_stackid(ctx, &stacks, 0) : -EFAULT;
		BPF_CORE_READ_STR_INTO(&ik.key.comm, prev, comm);
		if (bpf_map_update_elem(&start, &tid, &ik, BPF_ANY))
			tk_count(start_full);
	}

	tid = BPF_CORE_READ(next, pid);
	ip = bpf_map_lookup_elem(&start, &tid);
	if (!ip)
		return 0;
	delta = now - ip->start_ts;
	if (now < ip->start_ts || delta < min_block_ns || delta > max_block_ns)
		goto out;
	us = delta / 1000;
	total = bpf_map_lookup_elem(&counts, &ip->key);
	if (total) {
		__sync_fetch_and_add(total, us);
	} else {
		err = bpf_map_update_elem(&counts, &ip->key, &us, BPF_NOEXIST);
		if (err == -17 /* EEXIST: another CPU added it */) {
			total = bpf_map_lookup_elem(&counts, &ip->key);
			if (total)
				__sync_fetch_and_add(total, us);
		} else if (err) {
			tk_count(counts_full);
		}
	}
out:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, next);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return on_switch(ctx, prev, next);
}

char LICENSE[] SEC("license") = "GPL";
