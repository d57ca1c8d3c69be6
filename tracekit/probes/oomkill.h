/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* oomkill: the record sent to user space for each OOM kill. */
#ifndef __TRACEKIT_OOMKILL_H
#define __TRACEKIT_OOMKILL_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

struct event {
	__u64 ts;                   /* bpf_ktime_get_ns() */
	__u64 pages;                /* oc->totalpages; 0 when the hook cannot see it (mark_victim) */
	__u32 fpid;                 /* the triggering process (current) */
	__u32 tpid;                 /* the victim */
	char fcomm[TASK_COMM_LEN];
	char tcomm[TASK_COMM_LEN];  /* empty when the hook does not carry it (mark_victim before 6.8) */
};

#endif /* __TRACEKIT_OOMKILL_H */
