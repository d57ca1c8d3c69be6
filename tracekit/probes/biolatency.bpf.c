// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * biolatency: block I/O latency as log2 histograms, from issue (or queue insert) to
 * completion.
 *
 * Hooks are the block tracepoints, which exist on every kernel this supports, as tp_btf
 * programs (5.5+: direct access to struct request) with raw_tp twins for kernels that
 * cannot load tp_btf; the declaration picks one per hook.  Both take the request pointer
 * since 5.11 (block_rq_issue/insert lost their request_queue argument then).  BCC's
 * kprobes on blk_account_io_done/blk_mq_start_request are not needed: the first became
 * inline in 5.16 and was removed in 6.4.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "biolatency.h"

const volatile bool targ_per_disk = false;
const volatile bool targ_per_flag = false;
const volatile bool targ_queued = false;
const volatile bool targ_ms = false;
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;

/* completions that found the start or hists map full: missing from the histograms */
__u64 tk_dropped_hists = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct request *);
	__type(value, __u64);           /* bpf_ktime_get_ns() at insert or issue */
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

/* kernels before 5.17 kept the disk in the request itself */
struct request___had_rq_disk {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rq_dev(struct request *rq)
{
	struct request___had_rq_disk *old = (void *)rq;
	struct gendisk *disk;

	if (bpf_core_field_exists(old->rq_disk))
		disk = BPF_CORE_READ(old, rq_disk);
	else
		disk = BPF_CORE_READ(rq, q, disk);
	if (!disk)
		return 0;
	return ((__u32)BPF_CORE_READ(disk, major) << 20) | (__u32)BPF_CORE_READ(disk, first_minor);
}

/*
 * floor(log2 v), clamped to max - 1, as a bounded loop: every exit has a constant
 * slot, which the 6.1 verifier follows (a branch-free log2 plus a clamp made it explore
 * an impossible branch with inconsistent bounds and reject the map access).
 */
static __always_inline __u32 log2_slot(__u64 v, const __u32 max)
{
	__u32 i;

	for (i = 0; i < max - 1; i++) {
		if (v <= 1)
			break;
		v >>= 1;
	}
	return i;
}

static __always_inline int rq_start(struct request *rq, bool issue)
{
	__u64 ts;

	if (filter_dev && rq_dev(rq) != targ_dev)
		return 0;
	ts = bpf_ktime_get_ns();
	/* with -Q the insert time stays: issue only fills in requests that skipped the
	 * scheduler queue (no elevator, or a direct issue) */
	if (bpf_map_update_elem(&start, &rq, &ts, issue && targ_queued ? BPF_NOEXIST : BPF_ANY) == -7 /* -E2BIG: map full */)
		tk_count(tk_dropped_hists);
	return 0;
}

static __always_inline int rq_done(struct request *rq)
{
	static const struct hist zero = {};
	struct hist_key key = {};
	struct hist *h;
	__u64 *tsp, delta;
	__u32 slot;

	tsp = bpf_map_lookup_elem(&start, &rq);
	if (!tsp)
		return 0;   /* started before we attached, or filtered out */
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &rq);
	if ((__s64)delta < 0)
		return 0;
	if (targ_per_disk)
		key.dev = rq_dev(rq);
	if (targ_per_flag)
		key.cmd_flags = BPF_CORE_READ(rq, cmd_flags);
	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		bpf_map_update_elem(&hists, &key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h) {
			tk_count(tk_dropped_hists);
			return 0;
		}
	}
	delta /= targ_ms ? 1000000U : 1000U;
	slot = log2_slot(delta, BIOLAT_MAX_SLOTS);
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum, delta);
	return 0;
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(block_rq_insert_btf, struct request *rq)
{
	return rq_start(rq, false);
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue_btf, struct request *rq)
{
	return rq_start(rq, true);
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request *rq, int error, unsigned int nr_bytes)
{
	return rq_done(rq);
}

SEC("raw_tp/block_rq_insert")
int BPF_PROG(block_rq_insert_raw, struct request *rq)
{
	return rq_start(rq, false);
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(block_rq_issue_raw, struct request *rq)
{
	return rq_start(rq, true);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request *rq, int error, unsigned int nr_bytes)
{
	return rq_done(rq);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
