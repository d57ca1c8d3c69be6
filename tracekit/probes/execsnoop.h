/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* execsnoop: the record sent to user space for each execve(), and its limits. */
#ifndef __TRACEKIT_EXECSNOOP_H
#define __TRACEKIT_EXECSNOOP_H

#define ARGSIZE            128  /* bytes read per argument, NUL included */
#define DEFAULT_MAXARGS    20   /* arguments kept when max_args is not set */
#define TOTAL_MAX_ARGS     60   /* upper bound for max_args */
#define FULL_MAX_ARGS_ARR  (TOTAL_MAX_ARGS * ARGSIZE)
/* Last offset at which a whole ARGSIZE read still fits in args[]. */
#define LAST_ARG           (FULL_MAX_ARGS_ARR - ARGSIZE)

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/*
 * Only the first offsetof(struct event, args) + args_size bytes are emitted, so user
 * space must size its reads by args_size, not by sizeof(struct event).
 * args: argv[0..args_count) (filename first), each NUL-terminated, back to back.
 * args_count == max_args + 1 means the argument list was truncated.
 */
struct event {
	int pid;            /* process id (tgid) */
	int ppid;           /* parent's process id */
	unsigned int uid;
	int retval;         /* execve() return: 0 or -errno */
	int args_count;
	unsigned int args_size;
	char comm[TASK_COMM_LEN];
	char args[FULL_MAX_ARGS_ARR];
};

#endif /* __TRACEKIT_EXECSNOOP_H */
