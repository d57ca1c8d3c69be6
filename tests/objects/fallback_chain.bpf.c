// SPDX-License-Identifier: GPL-2.0
/* Fallback chains (tests/live/test_fallback.py): three ways to see unlinkat() and three
 * ways to see a context switch; the Probe loads the first one the kernel supports, and
 * each program counts its own hits, so the test sees which one ran. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 hits_fentry = 0, hits_kprobe = 0, hits_tp = 0;
__u64 hits_renamed_fentry = 0, hits_renamed_kprobe = 0, hits_renamed_tp = 0;
__u64 hits_tp_btf = 0, hits_raw_tp = 0, hits_sched_tp = 0;

SEC("fentry/do_unlinkat")
int BPF_PROG(fe_unlink) { __sync_fetch_and_add(&hits_fentry, 1); return 0; }

SEC("kprobe/do_unlinkat")
int kp_unlink(void *ctx) { __sync_fetch_and_add(&hits_kprobe, 1); return 0; }

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int tp_unlink(void *ctx) { __sync_fetch_and_add(&hits_tp, 1); return 0; }

/* A function "renamed" across versions: the chain asks for a name that no kernel has
 * first, then the real one. */
SEC("fentry/do_unlinkat")
int BPF_PROG(fe_renamed) { __sync_fetch_and_add(&hits_renamed_fentry, 1); return 0; }

SEC("kprobe/do_unlinkat")
int kp_renamed(void *ctx) { __sync_fetch_and_add(&hits_renamed_kprobe, 1); return 0; }

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int tp_renamed(void *ctx) { __sync_fetch_and_add(&hits_renamed_tp, 1); return 0; }

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_switch) { __sync_fetch_and_add(&hits_tp_btf, 1); return 0; }

SEC("raw_tp/sched_switch")
int raw_switch(void *ctx) { __sync_fetch_and_add(&hits_raw_tp, 1); return 0; }

SEC("tracepoint/sched/sched_switch")
int tp_switch(void *ctx) { __sync_fetch_and_add(&hits_sched_tp, 1); return 0; }

char LICENSE[] SEC("license") = "GPL";
