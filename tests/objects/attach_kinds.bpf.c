// One counter per attach kind this VM supports: tracepoint, raw_tp, tp_btf, and a raw_tp
// with no target in its SEC name (attached explicitly by the test).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 target_tgid = 0;
__u64 tp_hits = 0, raw_hits = 0, btf_hits = 0, manual_hits = 0;
long last_syscall_id = -1;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_tp(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&tp_hits, 1);
	return 0;
}

SEC("raw_tp/sys_enter")
int on_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine())
		__sync_fetch_and_add(&raw_hits, 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_btf, struct pt_regs *regs, long id)
{
	if (mine() && id == 110 /* __NR_getppid on x86_64 */) {
		__sync_fetch_and_add(&btf_hits, 1);
		last_syscall_id = id;
	}
	return 0;
}

SEC("raw_tp")
int on_manual(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&manual_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
