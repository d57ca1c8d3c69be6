// The main object of the link tests: calls link_lib's functions, overrides its weak
// lib_scale(), uses its variables and its map through externs, and has CO-RE
// relocations and a kconfig extern of its own.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "link_lib.h"

const volatile __u32 main_knob = 100;
__u64 res_add = 0;
__u64 res_scale = 0;
__u64 res_record = 0;
__u64 main_pid_off = 0;
__u64 main_kver = 0;
__u64 main_hits = 0;
const volatile __u32 target_tgid = 0;
#ifdef WITH_KERNEL_EXTERNS
/* kernel externs stay undefined in the linked object (resolved at load time) */
extern int LINUX_KERNEL_VERSION __kconfig;
extern void bpf_rcu_read_lock(void) __ksym;
#endif

/* strong definition: wins over link_lib's __weak one */
__noinline int lib_scale(int x)
{
	return x * 10;
}

SEC("syscall")
int main_prog(void *ctx)
{
	__u32 key = 2;
	__u64 val = 42;

	res_add = lib_add((int)lib_data, 5);
	res_scale = lib_scale(4);
	res_record = lib_record(9);
	lib_counter += 1;
	main_pid_off = bpf_core_field_offset(struct task_struct, pid);
#ifdef WITH_KERNEL_EXTERNS
	main_kver = LINUX_KERNEL_VERSION;
	bpf_rcu_read_lock();
#endif
	bpf_map_update_elem(&shared_map, &key, &val, 0);
	return lib_factor + main_knob;
}

SEC("raw_tp/sys_enter")
int main_on_enter(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	main_hits++;
	lib_counter += lib_add(0, 1000);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
