// SPDX-License-Identifier: GPL-2.0
/*
 * ksym externs: typed per-CPU variables (BPF_PSEUDO_BTF_ID), an untyped symbol (address
 * from /proc/kallsyms) and weak ones no kernel has (must read as 0).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "extern_common.h"

#ifdef TYPED
/* typed, per-CPU: the kernel finds their addresses with kallsyms, which lists data
 * symbols only with CONFIG_KALLSYMS_ALL=y */
extern const struct rq runqueues __ksym;
extern const int bpf_prog_active __ksym;
#endif
extern const void bpf_prog_put __ksym;         /* untyped: address from kallsyms */
extern const int tracekit_no_such_var __ksym __weak;  /* typed, missing */
extern const void tracekit_no_such_sym __ksym __weak; /* untyped, missing */

__u64 prog_put_addr = 0;
__u64 missing_typed = 1, missing_untyped = 1;
int rq_cpu = -1, this_cpu = -2, prog_active_ok = 0;

SEC("syscall")
int use_ksyms(void *ctx)
{
	struct rq *rq;
	int *active;

	prog_put_addr = (__u64)&bpf_prog_put;
	missing_typed = (__u64)&tracekit_no_such_var;
	missing_untyped = (__u64)&tracekit_no_such_sym;
#ifdef TYPED
	rq = (struct rq *)bpf_this_cpu_ptr(&runqueues);
	rq_cpu = rq->cpu;
	this_cpu = bpf_get_smp_processor_id();
	active = (int *)bpf_per_cpu_ptr(&bpf_prog_active, 0);
	prog_active_ok = active != 0;
#endif
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
