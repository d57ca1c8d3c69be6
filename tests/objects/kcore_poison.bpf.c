// SPDX-License-Identifier: GPL-2.0
/* Kernel-side CO-RE (tracekit.kernel.kcore): a relocation no kernel can satisfy, reached
 * unguarded, so the instruction is poisoned and the verifier refuses the program; the
 * loader must then explain it with the user-space engine's report. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___kcore {
	int tracekit_kcore_missing_field;
} __attribute__((preserve_access_index));

__u64 out;

SEC("raw_tp/sys_enter")
int kcore_poison(void *ctx)
{
	struct task_struct___kcore *t = (void *)bpf_get_current_task();

	out = BPF_CORE_READ(t, tracekit_kcore_missing_field);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
