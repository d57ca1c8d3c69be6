// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sigsnoop: signals, as libbpf-tools' sigsnoop (and BCC's killsnoop with kill_mode).
 *
 * Default: signal:signal_generate, every generated signal, including those the kernel
 * sends (SIGCHLD, SIGSEGV, SIGPIPE); the tracepoint names the target's comm.
 * kill_mode: syscalls:sys_{enter,exit}_{kill,tkill,tgkill}, paired per thread, with the
 * syscall's return as the result; signal 0 (an existence check) shows too.  While a
 * kill-family call is in flight, signal_generate (if it fires) lends the target's comm,
 * which libbpf-tools gets from the bpf_task_from_pid kfunc (6.2+) instead.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "sigsnoop.h"

const volatile __u32 filtered_pid = 0;  /* sender process id (0: any) */
const volatile int target_pid = 0;      /* target as given to kill / the thread id (0: any) */
const volatile __u64 sig_mask = 0;      /* bit n: signal n (0: all signals) */
const volatile bool failed_only = false;
const volatile bool kill_mode = false;

__u64 events_emitted = 0;
TK_DROP_COUNTER(events);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);                     /* sender thread id */
	__type(value, struct event);
} values SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

static __always_inline bool sig_wanted(int sig)
{
	if (!sig_mask)
		return true;
	return sig >= 0 && sig < 64 && (sig_mask & (1ULL << sig));
}

static __always_inline int enter(int tpid, int sig, __u32 source)
{
	struct event ev = {};
	__u32 tgid, tid;

	tk_current_ids(&tgid, &tid);
	if (filtered_pid && tgid != filtered_pid)
		return 0;
	if (target_pid && tpid != target_pid)
		return 0;
	if (!sig_wanted(sig))
		return 0;
	ev.pid = tgid;
	ev.tid = tid;
	ev.tpid = tpid;
	ev.sig = sig;
	ev.source = source;
	ev.result = -1;
	bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
	bpf_map_update_elem(&values, &tid, &ev, BPF_ANY);
	return 0;
}

static __always_inline int leave(struct trace_event_raw_sys_exit *ctx)
{
	struct event *ev, *e;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	int ret = ctx->ret;

	ev = bpf_map_lookup_elem(&values, &tid);
	if (!ev)
		return 0;
	if (failed_only && ret >= 0)
		goto cleanup;
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		goto cleanup;
	*e = *ev;
	e->ts = bpf_ktime_get_ns();
	e->ret = ret;
	tk_ringbuf_submit(events, e);
	tk_count(events_emitted);
cleanup:
	bpf_map_delete_elem(&values, &tid);
	return 0;
}

SEC("tracepoint/signal/signal_generate")
int tracepoint__signal__signal_generate(struct trace_event_raw_signal_generate *ctx)
{
	struct event *e, *inflight;
	__u32 tgid, tid;
	int sig = ctx->sig, err = ctx->errno;

	tk_current_ids(&tgid, &tid);
	if (kill_mode) {
		/* only lend the target's comm to the kill-family call of this thread */
		inflight = bpf_map_lookup_elem(&values, &tid);
		if (inflight && !inflight->has_tcomm) {
			bpf_probe_read_kernel_str(inflight->tcomm, sizeof(inflight->tcomm), ctx->comm);
			inflight->has_tcomm = 1;
		}
		return 0;
	}
	if (filtered_pid && tgid != filtered_pid)
		return 0;
	if (target_pid && ctx->pid != target_pid)
		return 0;
	if (!sig_wanted(sig))
		return 0;
	if (failed_only && err == 0)
		return 0;
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->tpid = ctx->pid;
	e->sig = sig;
	e->ret = err;
	e->result = ctx->result;
	e->source = SRC_GENERATE;
	e->has_tcomm = 1;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->tcomm, sizeof(e->tcomm), ctx->comm);
	tk_ringbuf_submit(events, e);
	tk_count(events_emitted);
	return 0;
}

/* kill(pid_t pid, int sig) */
SEC("tracepoint/syscalls/sys_enter_kill")
int tracepoint__syscalls__sys_enter_kill(struct trace_event_raw_sys_enter *ctx)
{
	return enter((int)ctx->args[0], (int)ctx->args[1], SRC_KILL);
}

SEC("tracepoint/syscalls/sys_exit_kill")
int tracepoint__syscalls__sys_exit_kill(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx);
}

/* tkill(pid_t tid, int sig) */
SEC("tracepoint/syscalls/sys_enter_tkill")
int tracepoint__syscalls__sys_enter_tkill(struct trace_event_raw_sys_enter *ctx)
{
	return enter((int)ctx->args[0], (int)ctx->args[1], SRC_TKILL);
}

SEC("tracepoint/syscalls/sys_exit_tkill")
int tracepoint__syscalls__sys_exit_tkill(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx);
}

/* tgkill(pid_t tgid, pid_t tid, int sig): the target is the thread */
SEC("tracepoint/syscalls/sys_enter_tgkill")
int tracepoint__syscalls__sys_enter_tgkill(struct trace_event_raw_sys_enter *ctx)
{
	return enter((int)ctx->args[1], (int)ctx->args[2], SRC_TGKILL);
}

SEC("tracepoint/syscalls/sys_exit_tgkill")
int tracepoint__syscalls__sys_exit_tgkill(struct trace_event_raw_sys_exit *ctx)
{
	return leave(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
