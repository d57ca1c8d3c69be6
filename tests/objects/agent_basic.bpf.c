// Counters with decoders for the agent tests: comm (string + regexp), kind (uint +
// static_map), syscall and errno names, a kernel address (kaddrs + ksym) and raw bytes (hex).
#include "agent_common.h"

const volatile __u64 kaddr_vfs_read = 0;

struct comm_key {
	char comm[16];
	__u32 kind;  /* little-endian: the label takes its first byte, padding the other 3 */
};

struct sys_key {
	__u32 nr;
	__u32 err;
};

struct addr_key {
	__u64 addr;
	__u32 tag;  /* hex decoder */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct comm_key);
	__type(value, __u64);
} agent_seeks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sys_key);
	__type(value, __u64);
} agent_syscalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct addr_key);
	__type(value, __u64);
} agent_addrs SEC(".maps");

/* labels limited by the agent's series bound: one entry per distinct v */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} agent_values SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int count_seeks(struct trace_event_raw_sys_enter *ctx)
{
	long long v = agent_value(ctx);
	if (v < 0)
		return 0;
	struct comm_key ck = {};
	bpf_get_current_comm(ck.comm, sizeof(ck.comm));
	ck.kind = v % 3;
	add(&agent_seeks, &ck, 1);

	struct sys_key sk = { .nr = 8 /* lseek on x86-64 */, .err = 1 + v % 3 };
	add(&agent_syscalls, &sk, 1);

	struct addr_key ak = { .addr = kaddr_vfs_read, .tag = 0xdeadbeef };
	add(&agent_addrs, &ak, 1);

	__u32 vk = v;
	add(&agent_values, &vk, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
