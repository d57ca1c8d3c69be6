/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* tcplife: the record sent to user space when a TCP session closes. */
#ifndef __TRACEKIT_TCPLIFE_H
#define __TRACEKIT_TCPLIFE_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

struct event {
	__u64 ts;               /* bpf_ktime_get_ns() at CLOSE */
	__u64 span_ns;          /* from the last state change below FIN_WAIT1 to CLOSE */
	__u64 rx_b;             /* tcp_sock.bytes_received */
	__u64 tx_b;             /* tcp_sock.bytes_acked */
	__u32 pid;              /* the process that opened or closed it (see tcplife.bpf.c) */
	__u16 af;               /* AF_INET or AF_INET6 */
	__u16 lport;            /* host order */
	__u16 dport;
	__u16 __pad[3];
	__u8 saddr[16];         /* network order; IPv4 in bytes 0..3 */
	__u8 daddr[16];
	char comm[TASK_COMM_LEN];
};

#endif /* __TRACEKIT_TCPLIFE_H */
