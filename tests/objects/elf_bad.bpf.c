// Deliberately unusable objects for tests/unit/test_elf.py, one per -D switch.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#ifdef LEGACY_MAPS
struct legacy_def { unsigned int type, key_size, value_size, max_entries, flags; };
struct legacy_def legacy SEC("maps") = { .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 1 };
#endif

#ifdef UNKNOWN_SEC
SEC("not_a_hook/foo")
int weird(void *ctx) { return 0; }
#endif

#ifdef NO_MAP_TYPE
struct { __uint(max_entries, 1); } typeless SEC(".maps");
SEC("raw_tp/x")
int uses(void *ctx) { return bpf_map_lookup_elem(&typeless, &(int){0}) != 0; }
#endif

SEC("raw_tp/sys_enter")
int ok(void *ctx) { return 0; }
