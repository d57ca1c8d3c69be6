// SPDX-License-Identifier: GPL-2.0
/* CO-RE conformance cases: every program reads values through CO-RE relocations of local
 * types; the -DTARGET build defines the same names with another layout. */
#include "core_common.h"

volatile __u64 out[16];

/* ---- 1. moved fields, type size, pointer-as-array ---- */
#ifndef TARGET
struct cs_moved { int a; int b; long c; } PAC;
#else
struct cs_moved { long pad; long c; int b; int pad2; int a; };
#endif
ANCHOR(struct cs_moved, cs_moved)

/* ---- 2. renamed field ---- */
#ifndef TARGET
struct cs_renamed { int old_name; int keep; } PAC;
#else
struct cs_renamed { int new_name; int pad; int keep; };
#endif
ANCHOR(struct cs_renamed, cs_renamed)

/* ---- 3. resized fields (unsigned may grow, signed may not) ---- */
#ifndef TARGET
struct cs_resized { unsigned int u; int s; void *p; unsigned short w; } PAC;
#else
struct cs_resized { unsigned long long u; long s; void *p; unsigned int w; };
#endif
ANCHOR(struct cs_resized, cs_resized)

/* ---- 3b. array fields of another length: one element decides the access size ---- */
struct cs_pair { int x; int y; };
#ifndef TARGET
struct cs_arrays { int a[5]; struct cs_pair e[2]; int s[3]; unsigned int u[2]; } PAC;
#else
struct cs_arrays { long pad; int a[7]; struct cs_pair e[4]; long s[3]; unsigned long long u[2]; };
#endif
ANCHOR(struct cs_arrays, cs_arrays)

/* ---- 4. bitfields, incl. ones straddling their storage unit in a packed target ---- */
#ifndef TARGET
struct cs_bits { unsigned int a:3; int b:5; unsigned long long c:40; unsigned int d:4; } PAC;
#else
struct __attribute__((packed)) cs_bits {
	unsigned int pad:29;
	unsigned int a:6;		/* bits 29..34: straddles the first u32 */
	int b:5;			/* bits 35..39 */
	unsigned long long c:24;	/* bits 40..63 */
	unsigned int d:4;		/* bits 64..67 */
};
#endif
ANCHOR(struct cs_bits, cs_bits)

/* ---- 5. flavors ---- */
#ifndef TARGET
struct cs_flavor___v1 { int x; int y; } PAC;
struct cs_flavor___v2 { int z; } PAC;
#else
struct cs_flavor { int y; int x; };
ANCHOR(struct cs_flavor, cs_flavor)
#endif

/* ---- 6. nested anonymous members ---- */
#ifndef TARGET
struct cs_anon { int a; struct { int b; union { int c; long d; }; }; } PAC;
#else
struct cs_anon { long pad; union { struct { int pad2; int c; }; long d; }; int a; struct { int pad3; int b; }; };
#endif
ANCHOR(struct cs_anon, cs_anon)

/* ---- 7. arrays: elements, nested structs, flexible arrays, bounds ---- */
#ifndef TARGET
struct cs_elem { int x; int y; } PAC;
struct cs_arr { int pad; int arr[4]; struct cs_elem elems[2]; int n; char flex[]; } PAC;
struct cs_arr_shrink { int v[4]; } PAC;
#else
struct cs_elem { long pad; int y; int x; };
struct cs_arr { long pad[2]; int arr[8]; int n; struct cs_elem elems[3]; char flex[]; };
struct cs_arr_shrink { int v[2]; };
#endif
ANCHOR(struct cs_arr, cs_arr)
ANCHOR(struct cs_arr_shrink, cs_arr_shrink)

/* ---- 8. modifiers and typedefs ---- */
typedef unsigned int cs_u32_t;
#ifndef TARGET
struct cs_mods { const volatile int a; cs_u32_t b; struct cs_elem e; } PAC;
#else
typedef int cs_int_t;
typedef struct cs_elem cs_elem_t;
struct cs_mods { cs_u32_t b; volatile cs_int_t a; const cs_elem_t e; };
#endif
ANCHOR(struct cs_mods, cs_mods)

/* ---- 9. enums and enum64 ---- */
#ifndef TARGET
enum cs_enum { CS_A = 1, CS_B = 2, CS_C = 3 };
enum cs_enum64 { CS64_SMALL = 1, CS64_BIG = 0x100000000ULL };
enum cs_grow { CG_V = 5 };
enum cs_flv___old { CSF_X___old = 7 };
enum cs_neg { CN_M = -1 };
#else
enum cs_enum { CS_C = 30, CS_A = 10 };
enum cs_enum64 { CS64_BIG = 0x1234567890ULL, CS64_SMALL = 2 };
enum cs_grow { CG_V = 0x500000000ULL };	/* enum becomes enum64 */
enum cs_flv { CSF_X = 70 };
enum cs_neg { CN_M = -5 };
ANCHOR(enum cs_flv, cs_flv)
#endif
ANCHOR(enum cs_enum, cs_enum)
ANCHOR(enum cs_enum64, cs_enum64)
ANCHOR(enum cs_grow, cs_grow)
ANCHOR(enum cs_neg, cs_neg)

/* ---- 10. a type the target lacks ---- */
#ifndef TARGET
struct cs_missing { int a; } PAC;
#endif

/* ---- 11. type matches / exists ---- */
#ifndef TARGET
struct cs_match { int a; long b; } PAC;
struct cs_nomatch { int a; } PAC;
#else
struct cs_match { long b; int a; int extra; };
struct cs_nomatch { unsigned int a; };
#endif
ANCHOR(struct cs_match, cs_match)
ANCHOR(struct cs_nomatch, cs_nomatch)

/* ---- 12. several candidates that agree; candidate narrowing ---- */
#ifndef TARGET
struct cs_multi { int x; int y; } PAC;
#else
struct cs_multi { int x; int y; int z; };
struct cs_multi___v2 { int x; };
ANCHOR(struct cs_multi___v2, cs_multi_v2)
#endif
ANCHOR(struct cs_multi, cs_multi)

#ifndef TARGET
SEC("raw_tp") int moved(void *ctx)
{
	struct cs_moved *p = ctx;

	out[0] = p->a;
	out[1] = p->b;
	out[2] = p->c;
	out[3] = bpf_core_field_size(p->c);
	out[4] = bpf_core_type_size(struct cs_moved);
	out[5] = bpf_core_field_offset(p[2].b);
	out[6] = bpf_core_type_exists(struct cs_moved);
	return 0;
}

SEC("raw_tp") int renamed(void *ctx)
{
	struct cs_renamed *p = ctx;

	if (bpf_core_field_exists(p->old_name))
		out[0] = p->old_name;
	out[1] = p->keep;
	return 0;
}

SEC("raw_tp") int resized(void *ctx)
{
	struct cs_resized *p = ctx;

	out[0] = p->u;
	out[1] = p->s;
	out[2] = (long)p->p;
	out[3] = p->w;
	out[4] = bpf_core_field_size(p->u);
	out[5] = CORE_FIELD(p->s, K_SIGNED);
	out[6] = CORE_FIELD(p->u, K_SIGNED);
	return 0;
}

SEC("raw_tp") int array_fields(void *ctx)
{
	struct cs_arrays *p = ctx;

	out[0] = *p->a;			/* int a[5] -> int a[7]: same element, no resize */
	out[1] = *(int *)p->e;		/* struct cs_pair e[2] -> e[4]: same element size */
	out[2] = *p->s;			/* int s[3] -> long s[3]: signed element grows: poison */
	out[3] = *p->u;			/* unsigned u[2] -> u64 u[2]: unsigned element may grow */
	return 0;
}

SEC("raw_tp") int bits(void *ctx)
{
	struct cs_bits *bp = ctx;	/* not "p": the macro has a local of that name */

	out[0] = BPF_CORE_READ_BITFIELD(bp, a);
	out[1] = BPF_CORE_READ_BITFIELD(bp, b);
	out[2] = BPF_CORE_READ_BITFIELD(bp, c);
	out[3] = BPF_CORE_READ_BITFIELD(bp, d);
	return 0;
}

SEC("raw_tp") int flavors(void *ctx)
{
	struct cs_flavor___v1 *p = ctx;
	struct cs_flavor___v2 *q = ctx;

	out[0] = p->x;
	out[1] = p->y;
	out[2] = bpf_core_field_exists(q->z);
	out[3] = bpf_core_type_exists(struct cs_flavor___v2);
	return 0;
}

SEC("raw_tp") int anon(void *ctx)
{
	struct cs_anon *p = ctx;

	out[0] = p->a;
	out[1] = p->b;
	out[2] = p->c;
	out[3] = p->d;
	return 0;
}

SEC("raw_tp") int arrays(void *ctx)
{
	struct cs_arr *p = ctx;
	struct cs_arr_shrink *s = ctx;

	out[0] = p->arr[2];
	out[1] = p->elems[1].y;
	out[2] = p->flex[5];
	out[3] = bpf_core_field_size(p->arr[1]);
	out[4] = bpf_core_field_size(p->arr);
	out[5] = bpf_core_field_size(p->elems[0]);
	out[6] = s->v[1];
	out[7] = bpf_core_field_exists(s->v[3]);
	if (bpf_core_field_exists(s->v[3]))
		out[8] = s->v[3];
	return 0;
}

SEC("raw_tp") int mods(void *ctx)
{
	struct cs_mods *p = ctx;

	out[0] = p->a;
	out[1] = p->b;
	out[2] = p->e.x;
	out[3] = bpf_core_type_exists(cs_u32_t);
	out[4] = bpf_core_type_size(cs_u32_t);
	return 0;
}

SEC("raw_tp") int enums(void *ctx)
{
	out[0] = bpf_core_enum_value_exists(enum cs_enum, CS_B);
	out[1] = bpf_core_enum_value(enum cs_enum, CS_A);
	out[2] = bpf_core_enum_value_exists(enum cs_enum, CS_C);
	if (bpf_core_enum_value_exists(enum cs_enum, CS_B))
		out[3] = bpf_core_enum_value(enum cs_enum, CS_B);
	out[4] = bpf_core_enum_value(enum cs_enum64, CS64_BIG);
	out[5] = bpf_core_enum_value(enum cs_enum64, CS64_SMALL);
	out[6] = bpf_core_enum_value(enum cs_grow, CG_V);
	out[7] = bpf_core_enum_value(enum cs_flv___old, CSF_X___old);
	out[8] = bpf_core_enum_value(enum cs_neg, CN_M);
	return 0;
}

SEC("raw_tp") int missing(void *ctx)
{
	struct cs_missing *p = ctx;

	out[0] = bpf_core_type_exists(struct cs_missing);
	out[1] = bpf_core_type_size(struct cs_missing);
	out[2] = bpf_core_type_id_kernel(struct cs_missing);
	out[3] = bpf_core_field_exists(p->a);
	out[4] = bpf_core_type_matches(struct cs_missing);
	if (bpf_core_field_exists(p->a))
		out[5] = p->a;
	return 0;
}

SEC("raw_tp") int types(void *ctx)
{
	out[0] = bpf_core_type_id_local(struct cs_moved);
	out[1] = bpf_core_type_id_kernel(struct cs_moved);
	out[2] = bpf_core_type_matches(struct cs_match);
	out[3] = bpf_core_type_matches(struct cs_nomatch);
	out[4] = bpf_core_type_exists(struct cs_nomatch);
	out[5] = bpf_core_type_size(struct cs_match);
	return 0;
}

SEC("raw_tp") int multi(void *ctx)
{
	struct cs_multi *p = ctx;

	out[0] = p->x;		/* both candidates agree: 0 */
	out[1] = p->y;		/* only cs_multi has y: narrows the candidates */
	out[2] = bpf_core_type_size(struct cs_multi);	/* then only cs_multi is left: 12 */
	return 0;
}
#else
SEC("raw_tp") int anchor(void *ctx) { return 0; }
#endif

char LICENSE[] SEC("license") = "GPL";
