/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* biosnoop: the record sent to user space for each completed block I/O request. */
#ifndef __TRACEKIT_BIOSNOOP_H
#define __TRACEKIT_BIOSNOOP_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

struct event {
	__u64 ts;           /* bpf_ktime_get_ns() at completion */
	__u64 delta_ns;     /* issue -> completion */
	__u64 qdelta_ns;    /* I/O start (block_io_start) -> issue; (u64)-1 when the start was not seen */
	__u64 sector;
	__u32 len;          /* bytes */
	__u32 pid;          /* the process that started the I/O (0: unknown) */
	__u32 cmd_flags;    /* REQ_OP_* | REQ_* */
	__u32 dev;          /* major << 20 | minor */
	char comm[TASK_COMM_LEN];   /* "" when unknown */
};

#endif /* __TRACEKIT_BIOSNOOP_H */
