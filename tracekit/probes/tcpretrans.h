/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* tcpretrans: the record sent to user space for each TCP retransmission or loss probe. */
#ifndef __TRACEKIT_TCPRETRANS_H
#define __TRACEKIT_TCPRETRANS_H

#define RETRANSMIT 1    /* T column "R" */
#define TLP 2           /* T column "L": tail loss probe */

struct event {
	__u64 ts;               /* bpf_ktime_get_ns() */
	__u32 pid;              /* whatever task was current: usually 0 (softirq, timers) */
	__u32 seq;              /* TCP_SKB_CB(skb)->seq (0 for a loss probe) */
	int state;              /* the socket's TCP state */
	__u16 af;               /* AF_INET or AF_INET6 */
	__u16 lport;            /* host order */
	__u16 dport;
	__u16 type;             /* RETRANSMIT or TLP */
	__u8 saddr[16];         /* network order; IPv4 in bytes 0..3 */
	__u8 daddr[16];
};

/* count_mode: retransmits per flow, counted in the kernel (BCC's -c) */
struct flow {
	__u16 af;
	__u16 lport;
	__u16 dport;
	__u16 __pad;
	__u8 saddr[16];
	__u8 daddr[16];
};

#endif /* __TRACEKIT_TCPRETRANS_H */
