// SPDX-License-Identifier: GPL-2.0
/* kconfig externs of every supported type, copied into .bss by a syscall program. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "extern_common.h"

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern enum libbpf_tristate CONFIG_BPF_SYSCALL __kconfig;
extern bool CONFIG_BPF_JIT __kconfig __weak;
extern int CONFIG_HZ __kconfig __weak;
extern char CONFIG_LOCALVERSION[32] __kconfig __weak;
extern unsigned long long CONFIG_TRACEKIT_NOT_A_CONFIG __kconfig __weak;
extern char CONFIG_BPF_EVENTS __kconfig __weak;
#ifdef STRONG_MISSING
extern int CONFIG_TRACEKIT_STRONG_MISSING __kconfig;
#endif

unsigned int kernel_version = 0;
int has_cookie = -1, has_wrapper = -1, bpf_syscall = -1, bpf_jit = -1, hz = -1, bpf_events = -1;
unsigned long long not_a_config = 1;
char localversion[32] = {};

SEC("syscall")
int read_kconfig(void *ctx)
{
	kernel_version = LINUX_KERNEL_VERSION;
	has_cookie = LINUX_HAS_BPF_COOKIE;
	has_wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	bpf_syscall = CONFIG_BPF_SYSCALL;
	bpf_jit = CONFIG_BPF_JIT;
	hz = CONFIG_HZ;
	bpf_events = CONFIG_BPF_EVENTS;
	not_a_config = CONFIG_TRACEKIT_NOT_A_CONFIG;
	__builtin_memcpy(localversion, CONFIG_LOCALVERSION, sizeof(localversion));
#ifdef STRONG_MISSING
	hz = CONFIG_TRACEKIT_STRONG_MISSING;
#endif
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
