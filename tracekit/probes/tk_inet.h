/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tk_inet.h: what the network probes (tcpconnect, tcplife, tcpretrans, bindsnoop) share:
 * constants vmlinux.h lacks (it carries types and enums, no #defines) and CO-RE readers
 * of a socket's addresses.
 *
 * Addresses travel to user space as 16 bytes in network order plus the address family:
 * an IPv4 address fills the first 4 bytes.  One layout for both families keeps a single
 * record type per probe (BCC has separate v4/v6 perf buffers for the same reason C lacks
 * a union-friendly decoder; tracekit's records decode from BTF either way).
 */
#ifndef __TRACEKIT_INET_H
#define __TRACEKIT_INET_H

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Address of one end of a connection, network byte order (IPv4: bytes 0..3). */
typedef __u8 tk_addr_t[16];

static __always_inline __u16 tk_ntohs(__u16 v)
{
	return __builtin_bswap16(v);
}

/*
 * Local and remote address of `sk` (struct sock *), as the kernel has them now.  CO-RE:
 * __sk_common's members moved between releases; skc_v6_* exist only with CONFIG_IPV6.
 */
static __always_inline void tk_sock_addrs(const struct sock *sk, __u16 family, __u8 *saddr, __u8 *daddr)
{
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)daddr, sk, __sk_common.skc_daddr);
	} else if (bpf_core_field_exists(sk->__sk_common.skc_v6_rcv_saddr)) {
		BPF_CORE_READ_INTO((struct in6_addr *)saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)daddr, sk, __sk_common.skc_v6_daddr);
	}
}

#endif /* __TRACEKIT_INET_H */
