/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* offcputime: the key of the off-CPU time totals (BCC's key_t). */
#ifndef __TRACEKIT_OFFCPUTIME_H
#define __TRACEKIT_OFFCPUTIME_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

#define OFFCPU_MAX_STACK_DEPTH 127

struct key_t {
	__u32 pid;              /* thread id */
	__u32 tgid;             /* process id */
	__s32 user_stack_id;    /* bpf_get_stackid() result, or -errno (-EFAULT: none / not collected) */
	__s32 kernel_stack_id;
	char comm[TASK_COMM_LEN];
};

#endif /* __TRACEKIT_OFFCPUTIME_H */
