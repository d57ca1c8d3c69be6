// Objects that must NOT link with link_lib: each -D variant breaks one rule.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#if defined(STRONG_DUP)
__noinline int lib_add(int a, int b) { return a - b; }      /* second strong definition */
#define USE lib_add(1, 2)
#elif defined(PROTO_MISMATCH)
extern int lib_add(long a);                                   /* wrong prototype */
#define USE lib_add(1)
#elif defined(VAR_MISMATCH)
extern __u32 lib_counter;                                     /* wrong type */
#define USE lib_counter
#elif defined(KIND_MISMATCH)
extern int lib_add;                                           /* a variable, not a function */
#define USE lib_add
#elif defined(MAP_MISMATCH)
extern struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared_map SEC(".maps");
#define USE bpf_map_lookup_elem(&shared_map, &(__u32){0}) != 0
#elif defined(DUP_MAP)
#define LINK_LIB_IMPL
#include "link_lib.h"
struct SHARED_MAP_BODY shared_map SEC(".maps");
#define USE bpf_map_lookup_elem(&shared_map, &(__u32){0}) != 0
#elif defined(LICENSE_MISMATCH)
#define USE 0
#endif

SEC("syscall")
int bad_prog(void *ctx)
{
	return USE;
}

#ifdef LICENSE_MISMATCH
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#else
char LICENSE[] SEC("license") = "GPL";
#endif
