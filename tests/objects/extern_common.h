/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * extern_common.h: what the extern/arg:ctx test objects need beyond Debian's libbpf 1.1.2
 * headers.  Each definition is guarded so a newer libbpf that has it keeps working.
 */
#ifndef __TRACEKIT_EXTERN_COMMON_H
#define __TRACEKIT_EXTERN_COMMON_H

#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif
#ifndef __kconfig
#define __kconfig __attribute__((section(".kconfig")))
#endif
#ifndef __weak
#define __weak __attribute__((weak))
#endif

/* A weak kernel symbol resolved on this kernel?  The loader writes 0 into the ldimm64 of an
 * unresolved one, so the verifier sees a constant and drops the guarded branch. */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) ({                                                        \
	_Static_assert(!__builtin_constant_p(!!(sym)), #sym " must be declared __weak");  \
	!!(sym);                                                                          \
})
#endif

/* The argument is the program's context (kernel >= 6.8 natively, else loader fallback). */
#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif

#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif

#endif /* __TRACEKIT_EXTERN_COMMON_H */
