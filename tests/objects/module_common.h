/* SPDX-License-Identifier: GPL-2.0 */
/*
 * module_common.h: local views of types that live in *module* BTF on the qemu guests'
 * Debian 6.1/6.12 kernels (tests/live/test_module_btf.py).  Each is a ___tk flavor so it
 * never clashes with a vmlinux.h that has the real definition (this 6.18 host builds
 * overlay and nf_conntrack in), and CO-RE matches it by its essential name.
 */
#ifndef __TRACEKIT_MODULE_COMMON_H
#define __TRACEKIT_MODULE_COMMON_H

#include "extern_common.h"

/* overlay.ko: struct ovl_fs.  layers/creator_cred/errseq moved between 6.1 and 6.12,
 * numdatalayer came in 6.5, the last member exists nowhere. */
struct ovl_fs___tk {
	unsigned int numlayer;
	unsigned int numdatalayer;
	void *layers;
	const void *creator_cred;
	unsigned int errseq;
	int tracekit_no_such_member;
} __attribute__((preserve_access_index));

/* 9pnet.ko, 9p.ko and 9pnet_virtio.ko each carry their own copy of struct p9_client
 * (module BTF is deduplicated against vmlinux only): module candidates that must agree. */
struct p9_client___tk {
	unsigned int msize;
	char name[65];
} __attribute__((preserve_access_index));

/* nf_conntrack.ko: struct bpf_ct_opts, 12 bytes (NF_BPF_CT_OPTS_SZ on 6.1; 6.12 grew it to
 * 16 bytes and still accepts 12, with the zone fields then taken as 0). */
struct bpf_ct_opts___tk {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
};

#define TK_CT_OPTS_SZ 12
#define TK_CURRENT_NETNS (-1)

#endif /* __TRACEKIT_MODULE_COMMON_H */
