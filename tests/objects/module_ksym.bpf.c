// SPDX-License-Identifier: GPL-2.0
/*
 * A typed __ksym defined in a module: x_tables.ko's per-CPU xt_recseq (module BTF carries
 * per-CPU variables as VARs).  The ldimm64 becomes BPF_PSEUDO_BTF_ID with x_tables' BTF fd.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "module_common.h"

extern const seqcount_t xt_recseq __ksym;

__u64 recseq_addr = 0;
__u32 recseq_seq = 1;
int cpu0_ok = 0;

SEC("syscall")
int read_recseq(void *ctx)
{
	const seqcount_t *mine = bpf_this_cpu_ptr(&xt_recseq);

	/* the per-CPU pointer itself: the kernel puts the symbol's kallsyms value there */
	recseq_addr = (__u64)&xt_recseq;
	/* a copy, not mine->sequence: 6.1's verifier keeps the typedef as the pointee type
	 * ("Type 'seqcount_t' is not a struct") and refuses the field access */
	bpf_probe_read_kernel(&recseq_seq, sizeof(recseq_seq), mine);
	cpu0_ok = bpf_per_cpu_ptr(&xt_recseq, 0) != 0;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
