/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* biolatency: the histogram map's key and value (libbpf-tools' layout). */
#ifndef __TRACEKIT_BIOLATENCY_H
#define __TRACEKIT_BIOLATENCY_H

#define BIOLAT_MAX_SLOTS 27

/* one histogram per (flags, disk); either is 0 when the tool does not split by it */
struct hist_key {
	__u32 cmd_flags;    /* request op and flags (REQ_OP_* | REQ_*) with -F */
	__u32 dev;          /* major << 20 | minor with -D */
};

struct hist {
	__u32 slots[BIOLAT_MAX_SLOTS];  /* slot k: latency in [2^k, 2^(k+1)) units; 0 and 1 in slot 0 */
	__u64 sum;                      /* summed latency, same unit (BCC's -e average) */
};

#endif /* __TRACEKIT_BIOLATENCY_H */
