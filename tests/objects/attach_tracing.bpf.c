// fentry/fexit/fmod_ret programs for tests/live/test_attach_tracing.py (kernels with
// BPF trampolines: the 6.1/6.12 guests).  Module function: overlay's ovl_getattr (the
// guests' root is an overlayfs), loaded only when the test turns it on.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;
/* fmod_ret denies getattr of files with this name (set by the test) */
const volatile char deny_name[32] = {};

__u64 fe_hits, fx_hits, fm_hits, mod_hits;
__s64 fe_dfd, fx_ret;
__u64 fe_cookie, fx_cookie, mod_cookie;
char fe_name[64];

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(fe_unlinkat, int dfd, struct filename *name)
{
	if (!mine())
		return 0;
	fe_hits++;
	fe_dfd = dfd;
	fe_cookie = bpf_get_attach_cookie(ctx);
	bpf_probe_read_kernel_str(fe_name, sizeof(fe_name), BPF_CORE_READ(name, name));
	return 0;
}

SEC("fexit/do_unlinkat")
int BPF_PROG(fx_unlinkat, int dfd, struct filename *name, int ret)
{
	if (!mine())
		return 0;
	fx_hits++;
	fx_ret = ret;
	fx_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

/* security_* hooks are the functions fmod_ret may change without error injection */
SEC("fmod_ret/security_inode_getattr")
int BPF_PROG(fm_getattr, const struct path *path, int ret)
{
	char buf[32];
	const unsigned char *s;
	int i;

	if (!mine())
		return ret;
	s = BPF_CORE_READ(path, dentry, d_name.name);
	if (bpf_probe_read_kernel_str(buf, sizeof(buf), s) <= 0)
		return ret;
	for (i = 0; i < sizeof(buf); i++) {
		if (buf[i] != deny_name[i])
			return ret;
		if (!buf[i])
			break;
	}
	fm_hits++;
	return -13; /* -EACCES */
}

SEC("?fentry/ovl_getattr")
int BPF_PROG(mod_ovl_getattr)
{
	if (!mine())
		return 0;
	mod_hits++;
	mod_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}
