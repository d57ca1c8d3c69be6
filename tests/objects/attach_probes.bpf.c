// Probe programs for tests/live/test_attach_*.py: every kprobe/uprobe kind records
// what it saw (hit count, an argument or the return value, its cookie, the probed IP)
// in .bss, for the process target_tgid only (or every process when it is 0).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;

__u64 kp_hits, krp_hits, ks_hits, krs_hits, km_hits, kmr_hits, up_hits, urp_hits;
__s64 kp_dfd, krp_ret, ks_arg, krs_ret, kmr_ret, up_arg, urp_ret;
__u64 kp_cookie, ks_cookie, km_cookie, up_cookie;
__u64 km_ip;
char kp_name[64];

static __always_inline int mine(void)
{
	/* 0: every process (the uprobe tests filter by the attachment's pid instead) */
	return !target_tgid || (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

/* do_unlinkat(int dfd, struct filename *name) in 6.1 .. 6.18 */
SEC("kprobe/do_unlinkat")
int BPF_KPROBE(kp_unlinkat, int dfd, struct filename *name)
{
	const char *s;

	if (!mine())
		return 0;
	kp_hits++;
	kp_dfd = dfd;
	kp_cookie = bpf_get_attach_cookie(ctx);
	s = BPF_CORE_READ(name, name);
	bpf_probe_read_kernel_str(kp_name, sizeof(kp_name), s);
	return 0;
}

SEC("kretprobe/do_unlinkat")
int BPF_KRETPROBE(krp_unlinkat, int ret) /* do_unlinkat returns int: eax only */
{
	if (!mine())
		return 0;
	krp_hits++;
	krp_ret = ret;
	return 0;
}

SEC("ksyscall/getpgid")
int BPF_KSYSCALL(ks_getpgid, int pid)
{
	if (!mine())
		return 0;
	ks_hits++;
	ks_arg = pid;
	ks_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("kretsyscall/getpgid")
int BPF_KRETPROBE(krs_getpgid, long ret)
{
	if (!mine())
		return 0;
	krs_hits++;
	krs_ret = ret;
	return 0;
}

SEC("kprobe.multi/__x64_sys_getpgid")
int km_getpgid(struct pt_regs *ctx)
{
	if (!mine())
		return 0;
	km_hits++;
	km_cookie = bpf_get_attach_cookie(ctx);
	km_ip = bpf_get_func_ip(ctx);
	return 0;
}

SEC("kretprobe.multi/__x64_sys_getpgid")
int BPF_KRETPROBE(kmr_getpgid, long ret)
{
	if (!mine())
		return 0;
	kmr_hits++;
	kmr_ret = ret;
	return 0;
}

/* attached by the tests to a function int f(int) of libc or of attach_target */
SEC("uprobe")
int BPF_KPROBE(up_func, int arg)
{
	if (!mine())
		return 0;
	up_hits++;
	up_arg = arg;
	up_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(urp_func, int ret)
{
	if (!mine())
		return 0;
	urp_hits++;
	urp_ret = ret;
	return 0;
}
