// Shared declarations of the link_* test objects: what link_lib.bpf.c exports.
#ifndef LINK_LIB_H
#define LINK_LIB_H

// One map definition text so the definition (lib) and the extern (users) agree.
#define SHARED_MAP_BODY                          \
	{                                        \
		__uint(type, BPF_MAP_TYPE_ARRAY); \
		__uint(max_entries, 4);          \
		__type(key, __u32);              \
		__type(value, __u64);            \
	}

#ifndef LINK_LIB_IMPL
extern int lib_add(int a, int b);
extern int lib_scale(int x);
extern int lib_record(int v);
extern __u64 lib_counter;
extern __u64 lib_data;
extern const volatile __u32 lib_factor;
extern struct SHARED_MAP_BODY shared_map SEC(".maps");
#endif

#endif
