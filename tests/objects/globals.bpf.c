// Globals round trip: .rodata knob set before load, .data written live by user space,
// .bss written by the program, and a custom .data.extra section.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile __u32 target_tgid = 0;
const volatile char greeting[16] = "hello";

__u64 input = 7;                         /* .data: user space writes it live */
__u64 output = 0;                        /* .bss: the program copies input here */
__u64 hits = 0;
char last_comm[16] = {};
__u32 extra_counter SEC(".data.extra") = 100;

static __noinline int record(__u64 v)
{
	output = v + (greeting[0] == 'h' ? 0 : 1000000);
	__sync_fetch_and_add(&hits, 1);
	extra_counter++;
	return 0;
}

SEC("raw_tp/sys_enter")
int on_sys_enter(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (tgid != target_tgid)
		return 0;
	bpf_get_current_comm(last_comm, sizeof(last_comm));
	return record(input);
}

char LICENSE[] SEC("license") = "GPL";
