// SPDX-License-Identifier: GPL-2.0
/*
 * kfunc externs: two flavors of bpf_task_acquire (one with the kernel's prototype, one
 * with a wrong one), a weak kfunc no kernel has, and strong kfuncs that must resolve.
 * Run with BPF_PROG_TEST_RUN; results land in .bss.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "extern_common.h"

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
/* the kernel's prototype: struct task_struct *(struct task_struct *) */
extern struct task_struct *bpf_task_acquire___good(struct task_struct *p) __ksym __weak;
/* same kfunc, an extra argument: incompatible, so it must stay unresolved */
extern struct task_struct *bpf_task_acquire___bad(struct task_struct *p, u64 flags) __ksym __weak;
extern int tracekit_no_such_kfunc(int x) __ksym __weak;
#ifdef STRONG_MISSING
extern int tracekit_no_such_kfunc_strong(int x) __ksym;
#endif
#ifdef STRONG_BAD_PROTO
extern struct task_struct *bpf_task_acquire(struct task_struct *p, int extra) __ksym;
#endif

int target_pid = 0;
int good_exists = -1, bad_exists = -1, missing_exists = -1;
int seen_pid = -1, used_flavor = -1, missing_ret = -1;

SEC("syscall")
int use_kfuncs(void *ctx)
{
	struct task_struct *t, *t2;

	good_exists = bpf_ksym_exists(bpf_task_acquire___good);
	bad_exists = bpf_ksym_exists(bpf_task_acquire___bad);
	missing_exists = bpf_ksym_exists(tracekit_no_such_kfunc);

	t = bpf_task_from_pid(target_pid);
	if (!t)
		return 1;
	if (bpf_ksym_exists(bpf_task_acquire___bad)) {
		t2 = bpf_task_acquire___bad(t, 0);
		used_flavor = 2;
	} else if (bpf_ksym_exists(bpf_task_acquire___good)) {
		t2 = bpf_task_acquire___good(t);
		used_flavor = 1;
	} else {
		t2 = 0;
		used_flavor = 0;
	}
	if (t2) {
		bpf_rcu_read_lock();
		seen_pid = t2->pid;
		bpf_rcu_read_unlock();
		bpf_task_release(t2);
	}
	if (bpf_ksym_exists(tracekit_no_such_kfunc))
		missing_ret = tracekit_no_such_kfunc(1);
#ifdef STRONG_MISSING
	missing_ret = tracekit_no_such_kfunc_strong(1);
#endif
#ifdef UNGUARDED
	missing_ret = tracekit_no_such_kfunc(2); /* weak and absent, reachable: must not load */
#endif
#ifdef STRONG_BAD_PROTO
	t2 = bpf_task_acquire(t, 1);
	if (t2)
		bpf_task_release(t2);
#endif
	bpf_task_release(t);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
