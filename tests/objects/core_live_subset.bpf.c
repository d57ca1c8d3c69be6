// SPDX-License-Identifier: GPL-2.0
/* A representative subset of the CO-RE conformance cases, run by the kernel: built once
 * against local types and once with -DTARGET; the local object is loaded with the target
 * build's BTF as its CO-RE target. User space writes a TARGET-layout record into `blob`;
 * the program reads it through relocated offsets, bitfield shifts, sizes, enum values and
 * existence checks, and stores what it saw in `res`. */
#include "core_common.h"

const volatile __u32 target_tgid = 0;
/* 8-byte aligned so relocated 8-byte loads stay aligned */
__u64 blob[8] = {};
__u64 res[12] = {};
__u64 hits = 0;

#ifndef TARGET
struct ls_rec { int a; int b; long c; unsigned int x:3; int y:5; unsigned short w; } PAC;
enum ls_enum { LS_ONE = 1, LS_TWO = 2 };
struct ls_gone { int q; } PAC;
#else
struct ls_rec {
	long pad;
	long c;			/* offset 8 */
	unsigned int pad2:7;
	unsigned int x:6;	/* bits 135..140 */
	int y:5;		/* bits 141..145 */
	int b;			/* offset 20 */
	int a;			/* offset 24 */
	unsigned int w;		/* offset 28: grew from 2 to 4 bytes */
};
enum ls_enum { LS_ZERO = 0, LS_TWO = 20, LS_ONE = 10 };
#endif
ANCHOR(struct ls_rec, ls_rec)
ANCHOR(enum ls_enum, ls_enum)

#ifndef TARGET
SEC("raw_tp/sys_enter")
int live_subset(void *ctx)
{
	struct ls_rec *r = (void *)blob;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	res[0] = r->a;				/* FIELD_BYTE_OFFSET, LDX off patched */
	res[1] = r->b;
	res[2] = r->c;
	res[3] = BPF_CORE_READ_BITFIELD(r, x);	/* LSHIFT/RSHIFT, BYTE_SIZE, SIGNED */
	res[4] = BPF_CORE_READ_BITFIELD(r, y);
	res[5] = r->w;				/* load size follows the target: 2 -> 4 bytes */
	res[6] = bpf_core_field_offset(r->c);
	res[7] = bpf_core_type_size(struct ls_rec);
	res[8] = bpf_core_enum_value(enum ls_enum, LS_ONE);
	res[9] = bpf_core_type_exists(struct ls_gone);
	res[10] = bpf_core_field_exists(r->b);
	res[11] = bpf_core_type_id_kernel(struct ls_rec);
	hits++;
	return 0;
}
#endif

char LICENSE[] SEC("license") = "GPL";
