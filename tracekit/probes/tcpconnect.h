/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* tcpconnect: the record sent to user space for each active TCP connect. */
#ifndef __TRACEKIT_TCPCONNECT_H
#define __TRACEKIT_TCPCONNECT_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

struct event {
	__u64 ts;               /* bpf_ktime_get_ns() when connect() returned */
	__u32 pid;              /* process id (tgid) */
	__u32 tid;              /* thread id */
	__u32 uid;
	int ret;                /* connect()'s return: 0, -EINPROGRESS, -ECONNREFUSED, ... */
	__u16 af;               /* AF_INET or AF_INET6 */
	__u16 lport;            /* local port, host order */
	__u16 dport;            /* remote port, host order */
	__u16 __pad;
	__u8 saddr[16];         /* network order; IPv4 in bytes 0..3 */
	__u8 daddr[16];
	char comm[TASK_COMM_LEN];
};

/* count_mode: connects per flow, counted in the kernel (BCC's -c) */
struct flow {
	__u16 af;
	__u16 lport;            /* 0 unless count_lport */
	__u16 dport;
	__u16 __pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

#endif /* __TRACEKIT_TCPCONNECT_H */
