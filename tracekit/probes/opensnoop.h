/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* opensnoop: the record sent to user space for each open(), openat() and openat2(). */
#ifndef __TRACEKIT_OPENSNOOP_H
#define __TRACEKIT_OPENSNOOP_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif
#ifndef NAME_MAX
#define NAME_MAX 255
#endif

struct event {
	__u64 ts;           /* bpf_ktime_get_ns() at syscall exit */
	int pid;            /* process id (tgid) */
	int tid;            /* thread id */
	unsigned int uid;
	int ret;            /* the new fd, or -errno */
	int flags;          /* O_* flags */
	__u32 mode;         /* mode bits passed with O_CREAT/O_TMPFILE */
	char comm[TASK_COMM_LEN];
	char fname[NAME_MAX];   /* NUL-terminated, truncated to NAME_MAX - 1 bytes */
};

#endif /* __TRACEKIT_OPENSNOOP_H */
