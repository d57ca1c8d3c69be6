// Test object for tests/unit/test_elf.py: every ELF feature the pure layer reads.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct event {
	__u32 pid;
	__u64 ts;
	char comm[16];
};

/* ---- BTF-defined maps, every field ---- */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct event);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(numa_node, 0);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 8);
} sized_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__type(value, __u64);
	__uint(map_extra, 3);
} bloom SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

int tail_target(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} jmp SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

/* ---- global data ---- */
const volatile __u32 target_pid = 42;        /* .rodata */
const volatile __u64 min_ns = 7;             /* .rodata */
__u64 counter = 5;                           /* .data */
__u32 hits;                                  /* .bss */
__u64 bss_arr[4];                            /* .bss */
__u32 custom_val SEC(".data.custom") = 0x1234;     /* .data.custom */
static __u32 static_counter = 9;             /* .data (static) */

/* ---- externs ---- */
extern int LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;
extern __u64 CONFIG_HZ __kconfig;
extern const struct rq runqueues __ksym;
extern const void bpf_prog_active __ksym __weak;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym __weak;

/* ---- subprograms ---- */
static __noinline int static_helper(int x)
{
	static_counter += x;
	return x * 3 + static_counter;
}

__noinline int global_helper(int x)
{
	return static_helper(x) + 1;
}

static int loop_cb(__u32 idx, void *data)
{
	__u64 *sum = data;
	*sum += idx;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int tp_execve(void *ctx)
{
	__u32 key = 0;
	struct event *e;
	__u64 sum = 0;

	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	e = bpf_map_lookup_elem(&events_hash, &key);
	if (e)
		e->ts = min_ns;
	bpf_loop(4, loop_cb, &sum, 0);
	counter += sum + global_helper(hits);
	bss_arr[2] = custom_val;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int tp_exit(void *ctx)
{
	struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = LINUX_KERNEL_VERSION;
	e->ts = CONFIG_HZ + (CONFIG_BPF_SYSCALL ? 1 : 0);
	bpf_ringbuf_submit(e, 0);
	return static_helper(2);
}

SEC("tp_btf/sched_switch")
int tp_btf_switch(u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct *a = bpf_task_acquire(t);
	if (a)
		bpf_task_release(a);
	if (bpf_rcu_read_lock)  /* bpf_ksym_exists(), absent from libbpf 1.1 headers */
		bpf_rcu_read_lock();
	if (&bpf_prog_active)
		hits++;
	return bpf_this_cpu_ptr(&runqueues) ? 0 : 1;
}

SEC("raw_tp/sys_enter")
int raw_one(void *ctx)
{
	return global_helper(1);
}

SEC("raw_tp/sys_exit")
int raw_two(void *ctx)
{
	bpf_tail_call(ctx, &jmp, 1);
	return sized_array.max_entries ? 0 : 1;
}

SEC("raw_tp/sys_exit")
int tail_target(void *ctx)
{
	return 0;
}

SEC("syscall")
int run_me(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&outer, &k);
	return v ? 1 : 0;
}
