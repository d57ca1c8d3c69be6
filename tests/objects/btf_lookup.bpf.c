// SPDX-License-Identifier: GPL-2.0
/*
 * In-kernel BTF id look-ups (tracekit.kernel.btf_lookup): kfuncs without ___flavors (so
 * the kernel's look-up may resolve them), a weak kfunc and a weak typed ksym no kernel
 * has, and a tp_btf program (attach id by the kernel).  use_kfuncs runs with
 * BPF_PROG_TEST_RUN; results land in .bss.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "extern_common.h"

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern int tracekit_no_such_kfunc(int x) __ksym __weak;
extern const int tracekit_no_such_var __ksym __weak;
#ifdef STRONG_MISSING
extern int tracekit_no_such_kfunc_strong(int x) __ksym;
#endif
#ifdef TOO_FEW_ARGS
/* the kernel's takes the task: the verifier refuses the call, user space explains it */
extern struct task_struct *bpf_task_acquire(void) __ksym;
#endif

int target_pid = 0;
int seen_pid = -1, missing_exists = -1, missing_ret = -1;
__u64 missing_var = 1;
__u64 switches = 0;

SEC("syscall")
int use_kfuncs(void *ctx)
{
	struct task_struct *t;

	missing_exists = bpf_ksym_exists(tracekit_no_such_kfunc);
	missing_var = (__u64)&tracekit_no_such_var;
	if (bpf_ksym_exists(tracekit_no_such_kfunc))
		missing_ret = tracekit_no_such_kfunc(1);
#ifdef STRONG_MISSING
	missing_ret = tracekit_no_such_kfunc_strong(1);
#endif
	t = bpf_task_from_pid(target_pid);
	if (!t)
		return 1;
#ifdef TOO_FEW_ARGS
	{
		struct task_struct *t2 = bpf_task_acquire();

		if (t2)
			bpf_task_release(t2);
	}
#endif
	bpf_rcu_read_lock();
	seen_pid = t->pid;
	bpf_rcu_read_unlock();
	bpf_task_release(t);
	return 0;
}

SEC("tp_btf/sched_switch")
int on_switch(u64 *ctx)
{
	__sync_fetch_and_add(&switches, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
