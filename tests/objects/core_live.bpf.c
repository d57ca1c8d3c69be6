// SPDX-License-Identifier: GPL-2.0
/* CO-RE against the running kernel: a raw_tp on sys_enter stores relocated values (and
 * values read through relocated offsets) into .bss for the calling process only. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

const volatile int target_tgid = 0;

__u64 hits;
__u64 pid_offset;		/* FIELD_BYTE_OFFSET task_struct.pid */
__u64 comm_size;		/* FIELD_BYTE_SIZE task_struct.comm */
__u64 task_size;		/* TYPE_SIZE struct task_struct */
__u64 task_btf_id;		/* TYPE_ID_TARGET struct task_struct */
__u64 pid_signed;		/* FIELD_SIGNED task_struct.pid */
__u64 flavor_exists;		/* FIELD_EXISTS of a field no kernel has */
__u64 type_missing;		/* TYPE_EXISTS of a type no kernel has */
__u64 enum_value;		/* ENUMVAL_VALUE BPF_MAP_TYPE_RINGBUF */
__u64 enum_missing;		/* ENUMVAL_EXISTS of a flavored enumerator no kernel has */
__u64 matches;			/* TYPE_MATCHES of a trimmed local struct list_head */
int core_tgid;			/* task->tgid read through BPF_CORE_READ */
int core_pid;			/* task->pid */
char core_comm[16];		/* task->comm */

struct task_struct___mine {
	int pid;
	int tgid;
	char comm[16];
	int no_such_field_in_any_kernel;
} __attribute__((preserve_access_index));

struct tracekit_no_such_type { int x; };

enum bpf_map_type___mine { BPF_MAP_TYPE_NO_SUCH___mine = 4242 };

struct list_head___trimmed {
	struct list_head___trimmed *next;
} __attribute__((preserve_access_index));

SEC("raw_tp/sys_enter")
int core_live(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct task_struct___mine *mine = (void *)task;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	hits++;
	pid_offset = bpf_core_field_offset(task->pid);
	comm_size = bpf_core_field_size(task->comm);
	task_size = bpf_core_type_size(struct task_struct);
	task_btf_id = bpf_core_type_id_kernel(struct task_struct);
	pid_signed = __builtin_preserve_field_info(task->pid, 3 /* FIELD_SIGNED */);
	flavor_exists = bpf_core_field_exists(mine->no_such_field_in_any_kernel);
	type_missing = bpf_core_type_exists(struct tracekit_no_such_type);
	enum_value = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	enum_missing = bpf_core_enum_value_exists(enum bpf_map_type___mine, BPF_MAP_TYPE_NO_SUCH___mine);
	matches = bpf_core_type_matches(struct list_head___trimmed);
	core_tgid = BPF_CORE_READ(mine, tgid);
	core_pid = BPF_CORE_READ(task, pid);
	BPF_CORE_READ_STR_INTO(&core_comm, task, comm);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
