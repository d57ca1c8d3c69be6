// SPDX-License-Identifier: GPL-2.0
/* CO-RE cases that must fail (or poison) with a clear error; one per program so each
 * can be relocated on its own. */
#include "core_common.h"

volatile __u64 out[4];

/* two candidates that disagree on x's offset */
#ifndef TARGET
struct cn_amb { int x; } PAC;
#else
struct cn_amb { int x; };
struct cn_amb___two { long pad; int x; };
ANCHOR(struct cn_amb___two, cn_amb_two)
#endif
ANCHOR(struct cn_amb, cn_amb)

/* the field exists under the same name with an incompatible type */
struct cn_inner { int v; };
#ifndef TARGET
struct cn_incompat { int pad; int x; } PAC;
#else
struct cn_incompat { int pad; struct cn_inner x; };
#endif
ANCHOR(struct cn_incompat, cn_incompat)

/* a bitfield no 64-bit load can cover in the target */
#ifndef TARGET
struct cn_bits { unsigned long long x:10; } PAC;
#else
struct __attribute__((packed)) cn_bits { unsigned long long pad:60; unsigned long long x:10; };
#endif
ANCHOR(struct cn_bits, cn_bits)

/* an index past the end of a local array (clang only warns) */
struct cn_arr { int v[4]; int after; } PAC;
ANCHOR(struct cn_arr, cn_arr)

#ifndef TARGET
SEC("raw_tp") int ambiguous(void *ctx)
{
	struct cn_amb *p = ctx;

	out[0] = p->x;
	return 0;
}

SEC("raw_tp") int incompatible(void *ctx)
{
	struct cn_incompat *p = ctx;

	out[0] = p->x;
	return 0;
}

SEC("raw_tp") int bitfield_too_wide(void *ctx)
{
	struct cn_bits *bp = ctx;

	out[0] = BPF_CORE_READ_BITFIELD(bp, x);
	return 0;
}

#pragma clang diagnostic ignored "-Warray-bounds"
SEC("raw_tp") int index_out_of_bounds(void *ctx)
{
	struct cn_arr *p = ctx;

	out[0] = bpf_core_field_offset(p->v[5]);
	return 0;
}
#else
SEC("raw_tp") int anchor(void *ctx) { return 0; }
#endif

char LICENSE[] SEC("license") = "GPL";
