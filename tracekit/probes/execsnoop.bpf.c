// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * execsnoop: report every execve() with its arguments, parent and result.
 *
 * sys_enter_execve copies filename and argv into a per-thread record kept in a hash map
 * (user memory is only readable here, before the new image replaces it); sys_exit_execve
 * adds the return value and the comm and sends the used part of the record to the
 * `events` ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "execsnoop.h"

/* Knobs set by user space before load (the .rodata map is frozen afterwards). */
const volatile bool ignore_failed = true;
const volatile __u32 targ_uid = INVALID_UID;
const volatile int max_args = DEFAULT_MAXARGS;

/* Live counters user space may read from the mmapped .bss. */
__u64 events_emitted = 0;
TK_DROP_COUNTER(events);    /* tk_dropped_events: ring buffer full (readers report it as lost) */
__u64 records_lost = 0;     /* in-flight map full at enter: execve not traced */

/* A zero record to seed the map: struct event is far larger than the 512-byte stack. */
static const struct event empty_event = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/*
	 * Only execve() calls in flight need an entry.  Hash maps are preallocated (tracing
	 * programs need that before 6.1) and a record is 7.7 KiB, so 10240 entries would pin
	 * 79 MiB of kernel memory and dominate load time; 1024 concurrent execs is plenty.
	 */
	__uint(max_entries, 1024);
	__type(key, __u32);             /* thread id */
	__type(value, struct event);
} execs SEC(".maps");

/*
 * A successful execve() from a thread other than the leader takes over the leader's id
 * (de_thread), so its exit arrives under tid == tgid.  Remember which thread of each
 * process has an exec in flight to find its record then.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);             /* process id */
	__type(value, __u32);           /* thread id of the exec in flight */
} thread_execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

SEC("tracepoint/syscalls/sys_enter_execve")
int tracepoint__syscalls__sys_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	const char *filename = (const char *)ctx->args[0];
	const char *const *argv = (const char *const *)ctx->args[1];
	const char *argp;
	struct task_struct *task;
	struct event *e;
	__u32 tgid, tid, uid, size;
	long ret;
	int i, count;

	uid = tk_current_uid();
	if (tk_uid_filter_set(targ_uid) && uid != targ_uid)
		return 0;

	tk_current_ids(&tgid, &tid);
	/*
	 * BPF_ANY, not BPF_NOEXIST: a thread has at most one execve() in flight, so an entry
	 * already there is stale (a non-leader thread whose exec succeeded reports its exit
	 * under the leader's id, or the probe was attached between enter and exit) and must
	 * not block every later exec of a thread that reuses the id.
	 */
	if (bpf_map_update_elem(&execs, &tid, &empty_event, BPF_ANY)) {
		tk_count(records_lost);
		return 0;
	}
	e = bpf_map_lookup_elem(&execs, &tid);
	if (!e)
		return 0;
	if (tid != tgid)
		bpf_map_update_elem(&thread_execs, &tgid, &tid, BPF_ANY);

	e->pid = tgid;
	e->uid = uid;
	task = (struct task_struct *)bpf_get_current_task();
	/* CO-RE: real_parent and tgid move between kernel builds. */
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);

	/* The filename stands in for argv[0]: it is what actually gets executed. */
	ret = bpf_probe_read_user_str(e->args, ARGSIZE, filename);
	if (ret < 0) {
		e->args[0] = '\0';
		ret = 1;
	}
	size = ret;
	count = 1;

	/* Keep the byte count in a register the verifier can bound before each read. */
	for (i = 1; i < TOTAL_MAX_ARGS; i++) {
		if (i >= max_args)
			break;
		if (bpf_probe_read_user(&argp, sizeof(argp), &argv[i]) || !argp)
			goto done;
		if (size > LAST_ARG)
			goto done;
		ret = bpf_probe_read_user_str(&e->args[size], ARGSIZE, argp);
		if (ret < 0)
			goto done;
		count++;
		size += ret;
	}
	/* Out of room: if another argument follows, flag the truncation with one extra count. */
	if (bpf_probe_read_user(&argp, sizeof(argp), &argv[i]) == 0 && argp)
		count++;
done:
	e->args_count = count;
	e->args_size = size;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int tracepoint__syscalls__sys_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	struct event *e;
	__u32 tgid, tid, *owner;
	__u64 len;
	int ret;

	tk_current_ids(&tgid, &tid);
	owner = bpf_map_lookup_elem(&thread_execs, &tgid);
	if (owner) {
		/* Leader now: a non-leader exec succeeded.  Or the exec failed in that thread. */
		if (tid == tgid)
			tid = *owner;
		if (tid == *owner)
			bpf_map_delete_elem(&thread_execs, &tgid);
	}
	e = bpf_map_lookup_elem(&execs, &tid);
	if (!e)
		return 0;

	ret = ctx->ret;
	if (ignore_failed && ret < 0)
		goto cleanup;

	e->retval = ret;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	len = offsetof(struct event, args) + e->args_size;
	if (len > sizeof(*e))
		goto cleanup;
	if (!tk_ringbuf_output_or_drop(events, e, len))
		tk_count(events_emitted);
cleanup:
	bpf_map_delete_elem(&execs, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
