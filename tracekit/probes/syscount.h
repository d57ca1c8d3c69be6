/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* syscount: the per-syscall (or per-process) counters user space reads and clears. */
#ifndef __TRACEKIT_SYSCOUNT_H
#define __TRACEKIT_SYSCOUNT_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* value of map `data`, keyed by a __u32: the syscall number, or the tgid with -P */
struct data_t {
	__u64 count;
	__u64 total_ns;             /* summed latency (only with measure_latency) */
	char comm[TASK_COMM_LEN];   /* the group leader's comm (with count_by_process) */
};

#endif /* __TRACEKIT_SYSCOUNT_H */
