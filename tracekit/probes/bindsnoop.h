/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* bindsnoop: the record sent to user space for each bind() of an IPv4/IPv6 socket. */
#ifndef __TRACEKIT_BINDSNOOP_H
#define __TRACEKIT_BINDSNOOP_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* opts bits (BCC's OPTS column "FTNRr", '.' where unset) */
#define OPT_FREEBIND        0x01   /* F: IP_FREEBIND */
#define OPT_TRANSPARENT     0x02   /* T: IP_TRANSPARENT */
#define OPT_BIND_NO_PORT    0x04   /* N: IP_BIND_ADDRESS_NO_PORT */
#define OPT_REUSEADDR       0x08   /* R: SO_REUSEADDR */
#define OPT_REUSEPORT       0x10   /* r: SO_REUSEPORT */

struct event {
	__u64 ts;               /* bpf_ktime_get_ns() when bind() returned */
	__u32 pid;              /* process id (tgid) */
	__u32 tid;
	__u32 uid;
	int ret;                /* bind()'s return: 0 or -errno */
	int bound_dev_if;       /* SO_BINDTODEVICE ifindex, 0 for none */
	__u16 af;               /* AF_INET or AF_INET6 */
	__u16 port;             /* host order: the bound port (the kernel's pick for port 0) */
	__u16 proto;            /* IPPROTO_* of the socket */
	__u8 opts;              /* OPT_* bits */
	__u8 __pad;
	__u8 addr[16];          /* as passed to bind(), network order; IPv4 in bytes 0..3 */
	char comm[TASK_COMM_LEN];
};

/* count_mode: binds per address and port, counted in the kernel (BCC's --count) */
struct bind_key {
	__u16 af;
	__u16 port;
	__u8 addr[16];
};

#endif /* __TRACEKIT_BINDSNOOP_H */
