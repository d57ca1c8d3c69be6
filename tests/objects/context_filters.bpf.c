// SPDX-License-Identifier: GPL-2.0
/* Container filters and context (tests/live/test_context.py): every getppid() that passes
 * the probe's filters is reported with the caller's cgroup id and mount namespace. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tracekit.h"

struct seen {
	__u32 pid;
	__u32 pad;
	__u64 cgroup_id;
	__u64 mntns;
};

TK_DECLARE_CGROUP_FILTER()
TK_DECLARE_CGROUPMAP_FILTER()
TK_DECLARE_MNTNS_FILTER()

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct seen);

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct seen *e;

	if (!tk_cgroup_allowed() || !tk_cgroupmap_allowed() || !tk_mntns_allowed())
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->pad = 0;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
