// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * opensnoop: report open(), openat() and openat2() with their result.
 *
 * Each syscall has its own enter and exit program, so a loader can switch off the ones
 * whose tracepoint a kernel lacks (sys_enter_open is absent on arm64, openat2 arrived in
 * 5.6).  Enter records the arguments per thread; exit pairs them with the result and
 * sends one fixed-size record to the `events` ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "opensnoop.h"

/*
 * Filters set by user space before load.  Naming follows libbpf-tools so existing
 * front ends map over: targ_tgid is the process id (-p), targ_pid the thread id (-t).
 * 0 means "any".
 */
const volatile __u32 targ_pid = 0;
const volatile __u32 targ_tgid = 0;
const volatile __u32 targ_uid = INVALID_UID;
const volatile bool targ_failed = false;

/* Live counters user space may read from the mmapped .bss. */
__u64 events_emitted = 0;
TK_DROP_COUNTER(events);    /* tk_dropped_events: ring buffer full (readers report it as lost) */

struct args_t {
	const char *fname;
	int flags;
	__u32 mode;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);             /* thread id */
	__type(value, struct args_t);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

static __always_inline bool trace_allowed(__u32 tgid, __u32 tid)
{
	__u32 uid;

	if (targ_tgid && targ_tgid != tgid)
		return false;
	if (targ_pid && targ_pid != tid)
		return false;
	if (tk_uid_filter_set(targ_uid)) {
		uid = tk_current_uid();
		if (uid != targ_uid)
			return false;
	}
	return true;
}

static __always_inline int trace_enter(const char *fname, int flags, __u32 mode)
{
	struct args_t args = {};
	__u32 tgid, tid;

	tk_current_ids(&tgid, &tid);
	if (!trace_allowed(tgid, tid))
		return 0;
	args.fname = fname;
	args.flags = flags;
	args.mode = mode;
	bpf_map_update_elem(&start, &tid, &args, BPF_ANY);
	return 0;
}

static __always_inline int trace_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct args_t *ap;
	struct event *e;
	__u32 tgid, tid;
	int ret;

	tk_current_ids(&tgid, &tid);
	ap = bpf_map_lookup_elem(&start, &tid);
	if (!ap)
		return 0;
	ret = ctx->ret;
	if (targ_failed && ret >= 0)
		goto cleanup;

	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		goto cleanup;
	e->ts = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->uid = tk_current_uid();
	e->ret = ret;
	e->flags = ap->flags;
	e->mode = ap->mode;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	if (bpf_probe_read_user_str(&e->fname, sizeof(e->fname), ap->fname) < 0)
		e->fname[0] = '\0';
	tk_ringbuf_submit(events, e);
	tk_count(events_emitted);
cleanup:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}

/* open(const char *filename, int flags, umode_t mode) */
SEC("tracepoint/syscalls/sys_enter_open")
int tracepoint__syscalls__sys_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return trace_enter((const char *)ctx->args[0], (int)ctx->args[1], (__u32)ctx->args[2]);
}

/* openat(int dfd, const char *filename, int flags, umode_t mode) */
SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return trace_enter((const char *)ctx->args[1], (int)ctx->args[2], (__u32)ctx->args[3]);
}

/* openat2(int dfd, const char *filename, struct open_how *how, size_t usize) */
SEC("tracepoint/syscalls/sys_enter_openat2")
int tracepoint__syscalls__sys_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how *how = (struct open_how *)ctx->args[2];
	__u64 flags = 0, mode = 0;

	/* open_how lives in user memory; CO-RE keeps the field offsets honest. */
	bpf_core_read_user(&flags, sizeof(flags), &how->flags);
	bpf_core_read_user(&mode, sizeof(mode), &how->mode);
	return trace_enter((const char *)ctx->args[1], (int)flags, (__u32)mode);
}

SEC("tracepoint/syscalls/sys_exit_open")
int tracepoint__syscalls__sys_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return trace_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return trace_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int tracepoint__syscalls__sys_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return trace_exit(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
