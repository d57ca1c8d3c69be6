// A second final object for link_lib with a different layout: its own globals come
// first in every data section, so link_lib's variables land at other offsets.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "link_lib.h"

__u64 other_pad_bss[5] = {};
__u64 other_pad_data[3] = {1, 2, 3};
const volatile __u64 other_pad_ro[6] = {9, 9, 9, 9, 9, 9};
__u64 other_seen = 0;

SEC("syscall")
int other_prog(void *ctx)
{
	other_seen = lib_data + other_pad_ro[0];
	lib_counter += lib_add(lib_factor, 100);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
