// A BPF "library": global functions, a weak default, globals in .bss/.data/.rodata,
// a map, CO-RE relocations and a program of its own.  Linked into link_main and
// link_other (tests/unit/test_linker.py, tests/live/test_linker_live.py, test_library.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#define LINK_LIB_IMPL
#include "link_lib.h"

__u64 lib_counter = 0;                    /* .bss */
__u64 lib_data = 7;                       /* .data */
const volatile __u32 lib_factor = 3;      /* .rodata */
__u64 lib_task_size = 0;                  /* .bss: CO-RE TYPE_SIZE result */
__u64 lib_last = 0;
static __u64 lib_private_hits = 0;        /* static: invisible to other objects */

struct SHARED_MAP_BODY shared_map SEC(".maps");

__noinline int lib_add(int a, int b)
{
	return a + b;
}

/* weak default: a final object may override it */
__weak __noinline int lib_scale(int x)
{
	return x * 2;
}

__noinline int lib_record(int v)
{
	__u32 key = 1;
	__u64 val = (__u64)v;

	lib_task_size = bpf_core_type_size(struct task_struct);
	lib_last = v;
	lib_private_hits++;
	bpf_map_update_elem(&shared_map, &key, &val, 0);
	return (int)lib_private_hits;
}

SEC("syscall")
int lib_prog(void *ctx)
{
	lib_counter += lib_scale(1);
	return lib_factor;
}

char LICENSE[] SEC("license") = "GPL";
