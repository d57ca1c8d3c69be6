// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * profile: sample stacks on a timer (perf cpu-clock events, one per CPU) and count each
 * distinct (process, comm, user stack, kernel stack).
 *
 * User space attaches do_perf_event to the software cpu-clock on every CPU (or -C) at the
 * requested frequency, fills the pid/tid filter sets, and reads `counts` and `stacks`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "profile.h"

#define EFAULT 14
#define EEXIST 17

const volatile bool filter_pids = false;    /* -p: only tgids in `pids` */
const volatile bool filter_tids = false;    /* -L: only tids in `tids` */
const volatile bool include_idle = false;   /* -I: also the idle task (tid 0) */
const volatile bool user_stacks = true;     /* false with -K */
const volatile bool kernel_stacks = true;   /* false with -U */

/* samples not counted because `counts` was full (BCC: "hash table full") */
__u64 counts_full = 0;

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

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);     /* --stack-storage-size */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PROFILE_MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 40960);     /* --hash-storage-size */
	__type(key, struct key_t);
	__type(value, __u64);
} counts SEC(".maps");

SEC("perf_event")
int do_perf_event(struct bpf_perf_event_data *ctx)
{
	__u32 tgid, tid;
	struct key_t key = {};
	__u64 one = 1, *v;
	long err;

	tk_current_ids(&tgid, &tid);
	if (!include_idle && tid == 0)
		return 0;
	if (filter_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return 0;
	if (filter_tids && !bpf_map_lookup_elem(&tids, &tid))
		return 0;

	key.pid = tgid;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	/* -EFAULT is what the helper answers for "no stack of this kind": user space prints
	 * nothing for it, so it also stands for "not collected" (-U/-K) */
	key.user_stack_id = user_stacks ? bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK) : -EFAULT;
	key.kernel_stack_id = kernel_stacks ? bpf_get_stackid(ctx, &stacks, 0) : -EFAULT;

	v = bpf_map_lookup_elem(&counts, &key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return 0;
	}
	err = bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	if (err == -EEXIST) {   /* another CPU inserted it first */
		v = bpf_map_lookup_elem(&counts, &key);
		if (v)
			__sync_fetch_and_add(v, 1);
	} else if (err) {
		tk_count(counts_full);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
