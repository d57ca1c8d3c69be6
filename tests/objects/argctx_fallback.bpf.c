// SPDX-License-Identifier: GPL-2.0
/*
 * Global subprograms whose context argument is only a `void *` tagged __arg_ctx.  Kernels
 * >= 6.8 honour the tag; older ones load this only thanks to the loader's fallback (the
 * argument retyped to the program type's context struct in a cloned FUNC_PROTO).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "extern_common.h"

__u64 seen = 0;

/* reads the context: only valid if the verifier knows r1 is PTR_TO_CTX */
__noinline int raw_sub(void *ctx __arg_ctx)
{
	struct bpf_raw_tracepoint_args *args = ctx;

	return (int)args->args[0];
}

SEC("raw_tp/sys_enter")
int argctx_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	seen = raw_sub(ctx) + 1;
	return 0;
}

/* bpf_get_func_ip() takes the context (libbpf's own probe of native support) */
__noinline int kprobe_sub(void *ctx __arg_ctx)
{
	return bpf_get_func_ip(ctx) != 0;
}

SEC("kprobe/do_nanosleep")
int argctx_kprobe(struct pt_regs *ctx)
{
	return kprobe_sub(ctx);
}

char LICENSE[] SEC("license") = "GPL";
