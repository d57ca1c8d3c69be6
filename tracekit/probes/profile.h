/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* profile: the key of the sample counts (BCC's and libbpf-tools' key_t). */
#ifndef __TRACEKIT_PROFILE_H
#define __TRACEKIT_PROFILE_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* bpf_get_stackid() depth: the kernel's PERF_MAX_STACK_DEPTH */
#define PROFILE_MAX_STACK_DEPTH 127

struct key_t {
	__u32 pid;              /* process id (tgid) */
	__s32 user_stack_id;    /* bpf_get_stackid() result: an id, or -errno (-EFAULT: none) */
	__s32 kernel_stack_id;
	char comm[TASK_COMM_LEN];
};

#endif /* __TRACEKIT_PROFILE_H */
