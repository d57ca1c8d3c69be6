// CO-RE relocations inside .text subprograms, for tests/unit/test_elf.py.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

__noinline int filler(int x)
{
	return x * 7 + 1;
}

__noinline int core_tgid(struct task_struct *t)
{
	return BPF_CORE_READ(t, tgid) + bpf_core_field_exists(t->pid);
}

SEC("tp_btf/sched_switch")
int on_switch(u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	return core_tgid(t) + filler(BPF_CORE_READ(t, pid));
}
