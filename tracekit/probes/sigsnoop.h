/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* sigsnoop: the record sent to user space for each signal (or kill-family syscall). */
#ifndef __TRACEKIT_SIGSNOOP_H
#define __TRACEKIT_SIGSNOOP_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

#define SRC_GENERATE 0  /* signal:signal_generate */
#define SRC_KILL     1  /* kill(2) */
#define SRC_TKILL    2  /* tkill(2) */
#define SRC_TGKILL   3  /* tgkill(2) */

struct event {
	__u64 ts;               /* bpf_ktime_get_ns() */
	__u32 pid;              /* sender's process id (tgid) */
	__u32 tid;              /* sender's thread id */
	int tpid;               /* target as given (kill: pid, 0, -1 or -pgid; else a thread id) */
	int sig;
	int ret;                /* syscall: its return; signal_generate: the errno field */
	int result;             /* signal_generate's TRACE_SIGNAL_* result (-1 for syscalls) */
	__u32 source;           /* SRC_* */
	__u32 has_tcomm;        /* tcomm is known (signal_generate saw the target) */
	char comm[TASK_COMM_LEN];
	char tcomm[TASK_COMM_LEN];
};

#endif /* __TRACEKIT_SIGSNOOP_H */
