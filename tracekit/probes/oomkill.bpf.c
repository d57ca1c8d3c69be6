// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * oomkill: one record per OOM kill: who triggered it, the victim, and the pages the OOM
 * killer weighed (oc->totalpages).
 *
 * BCC and libbpf-tools hook oom_kill_process() with a kprobe; the tracepoint
 * oom:mark_victim is the fallback for kernels without kprobes.  It fires in the same
 * context (current is the trigger) with the victim's pid, and since 6.8 its comm, but it
 * cannot see the oom_control, so pages is 0 there.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "oomkill.h"

TK_DROP_COUNTER(events);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

static __always_inline struct event *new_event(void)
{
	struct event *e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));

	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->fpid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&e->fcomm, sizeof(e->fcomm));
	return e;
}

SEC("kprobe/oom_kill_process")
int BPF_KPROBE(kprobe_oom_kill_process, struct oom_control *oc, const char *message)
{
	struct event *e = new_event();

	if (!e)
		return 0;
	e->tpid = BPF_CORE_READ(oc, chosen, tgid);
	BPF_CORE_READ_STR_INTO(&e->tcomm, oc, chosen, comm);
	e->pages = BPF_CORE_READ(oc, totalpages);
	tk_ringbuf_submit(events, e);
	return 0;
}

/* mark_victim before 6.8 had only the pid */
struct trace_event_raw_mark_victim___new {
	__u32 __data_loc_comm;
} __attribute__((preserve_access_index));

SEC("tracepoint/oom/mark_victim")
int tp_mark_victim(struct trace_event_raw_mark_victim *ctx)
{
	struct trace_event_raw_mark_victim___new *nctx = (void *)ctx;
	struct event *e = new_event();
	__u32 loc;

	if (!e)
		return 0;
	e->tpid = BPF_CORE_READ(ctx, pid);
	if (bpf_core_field_exists(nctx->__data_loc_comm)) {
		/* __data_loc: low 16 bits are the string's offset in the record */
		loc = BPF_CORE_READ(nctx, __data_loc_comm);
		bpf_probe_read_kernel_str(&e->tcomm, sizeof(e->tcomm), (void *)ctx + (loc & 0xffff));
	}
	tk_ringbuf_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
