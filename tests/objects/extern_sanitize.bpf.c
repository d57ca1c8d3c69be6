// SPDX-License-Identifier: GPL-2.0
/*
 * One of every BTF kind an old kernel may refuse (FLOAT, ENUM64, TYPE_TAG, DECL_TAG, global
 * FUNC, DATASEC/VAR), used by a syscall program, so a test can pretend each is missing and
 * check that the sanitized object still loads and computes the same result.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "extern_common.h"

enum tk_big { TK_BIG_A = 0x100000000ULL, TK_BIG_B = 7 };

double dval = 1.5;                                   /* FLOAT */
enum tk_big bigv = TK_BIG_A;                         /* ENUM64 */
int __attribute__((btf_type_tag("tk"))) *tagged_ptr; /* TYPE_TAG */
int tagged_var __attribute__((btf_decl_tag("tk_tag"))) = 5; /* DECL_TAG */
__u64 result = 0;

/* a global (non-static) subprogram: FUNC with global linkage */
__noinline int add_one(int x)
{
	return x + 1;
}

SEC("syscall")
int sanitize_prog(void *ctx)
{
	__u64 bits;

	__builtin_memcpy(&bits, &dval, sizeof(bits));
	result = bits ^ (__u64)bigv ^ (__u64)add_one(tagged_var) ^ (tagged_ptr ? 1 : 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
