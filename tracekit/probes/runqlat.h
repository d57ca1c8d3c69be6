/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* runqlat: the histogram map's value (libbpf-tools' layout). */
#ifndef __TRACEKIT_RUNQLAT_H
#define __TRACEKIT_RUNQLAT_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif
#define RUNQLAT_MAX_SLOTS 26

/* map `hists`: __u32 key (tgid with -P, tid with -L, pid namespace inode with --pidnss,
 * else 0) -> struct hist */
struct hist {
	__u32 slots[RUNQLAT_MAX_SLOTS];  /* slot k: latency in [2^k, 2^(k+1)) units; 0 and 1 in slot 0 */
	__u64 sum;                       /* summed latency, same unit */
	char comm[TASK_COMM_LEN];        /* a task of this key (the first seen) */
};

#endif /* __TRACEKIT_RUNQLAT_H */
