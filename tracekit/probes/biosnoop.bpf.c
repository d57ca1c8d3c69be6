// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * biosnoop: one record per completed block I/O request, with the process that started
 * it, its size, sector and latency.
 *
 * The starter is seen where the request is accounted: tracepoint block_io_start (6.5+,
 * tp_btf or raw_tp), else the function that tracepoint replaced, __blk_account_io_start
 * (5.16 .. 6.4) or blk_account_io_start (older), by fentry or kprobe; where that is
 * inline (6.1), tracepoint block_getrq, keyed by disk and sector since it sees the bio,
 * not yet the request.  All run in the submitting task, so the current pid/comm are the
 * issuer's.  Issue and completion come
 * from block_rq_issue/block_rq_complete (tp_btf, else raw_tp).  The declaration picks
 * one program per hook.  Requests are keyed by their struct request pointer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "biosnoop.h"

const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;

TK_DROP_COUNTER(events);

struct who {
	__u64 ts;           /* at I/O start */
	__u32 pid;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct request *);
	__type(value, struct who);
} infobyreq SEC(".maps");

/* block_getrq's key: the bio's disk and (whole-disk) start sector, the request's later */
struct sector_key {
	__u32 dev;
	__u32 __pad;
	__u64 sector;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct sector_key);
	__type(value, struct who);
} infobysector SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct request *);
	__type(value, __u64);           /* bpf_ktime_get_ns() at issue */
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

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

static __always_inline int io_start(struct request *rq)
{
	struct who w = {};

	if (filter_dev && rq_dev(rq) != targ_dev)
		return 0;
	w.ts = bpf_ktime_get_ns();
	w.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&w.comm, sizeof(w.comm));
	bpf_map_update_elem(&infobyreq, &rq, &w, BPF_ANY);
	return 0;
}

static __always_inline int bio_start(struct bio *bio)
{
	struct sector_key key = {};
	struct gendisk *disk;
	struct who w = {};

	disk = BPF_CORE_READ(bio, bi_bdev, bd_disk);
	if (!disk)
		return 0;
	key.dev = ((__u32)BPF_CORE_READ(disk, major) << 20) | (__u32)BPF_CORE_READ(disk, first_minor);
	if (filter_dev && key.dev != targ_dev)
		return 0;
	key.sector = BPF_CORE_READ(bio, bi_iter.bi_sector);
	w.ts = bpf_ktime_get_ns();
	w.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&w.comm, sizeof(w.comm));
	bpf_map_update_elem(&infobysector, &key, &w, BPF_ANY);
	return 0;
}

static __always_inline int rq_issue(struct request *rq)
{
	__u64 ts;

	if (filter_dev && rq_dev(rq) != targ_dev)
		return 0;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &rq, &ts, BPF_ANY);
	return 0;
}

static __always_inline int rq_complete(struct request *rq, unsigned int nr_bytes)
{
	struct sector_key skey = {};
	struct event *e;
	struct who *w;
	__u64 *tsp, now;

	tsp = bpf_map_lookup_elem(&start, &rq);
	if (!tsp)
		return 0;
	now = bpf_ktime_get_ns();
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		goto cleanup;
	e->ts = now;
	e->delta_ns = now - *tsp;
	skey.dev = rq_dev(rq);
	skey.sector = BPF_CORE_READ(rq, __sector);
	w = bpf_map_lookup_elem(&infobyreq, &rq);
	if (!w)
		w = bpf_map_lookup_elem(&infobysector, &skey);
	if (w) {
		e->qdelta_ns = *tsp - w->ts;
		e->pid = w->pid;
		__builtin_memcpy(e->comm, w->comm, sizeof(e->comm));
	} else {
		e->qdelta_ns = (__u64)-1;
		e->pid = 0;
		e->comm[0] = '\0';
	}
	e->sector = BPF_CORE_READ(rq, __sector);
	/* the request's size when issued: nr_bytes is only what this completion covers */
	e->len = BPF_CORE_READ(rq, __data_len);
	if (!e->len)
		e->len = nr_bytes;
	e->cmd_flags = BPF_CORE_READ(rq, cmd_flags);
	e->dev = skey.dev;
	tk_ringbuf_submit(events, e);
cleanup:
	bpf_map_delete_elem(&start, &rq);
	bpf_map_delete_elem(&infobyreq, &rq);
	bpf_map_delete_elem(&infobysector, &skey);
	return 0;
}

SEC("tp_btf/block_io_start")
int BPF_PROG(block_io_start_btf, struct request *rq)
{
	return io_start(rq);
}

SEC("raw_tp/block_io_start")
int BPF_PROG(block_io_start_raw, struct request *rq)
{
	return io_start(rq);
}

SEC("fentry/blk_account_io_start")
int BPF_PROG(blk_account_io_start_fentry, struct request *rq)
{
	return io_start(rq);
}

SEC("kprobe/blk_account_io_start")
int BPF_KPROBE(blk_account_io_start_kprobe, struct request *rq)
{
	return io_start(rq);
}

SEC("tp_btf/block_getrq")
int BPF_PROG(block_getrq_btf, struct bio *bio)
{
	return bio_start(bio);
}

SEC("raw_tp/block_getrq")
int BPF_PROG(block_getrq_raw, struct bio *bio)
{
	return bio_start(bio);
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue_btf, struct request *rq)
{
	return rq_issue(rq);
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(block_rq_issue_raw, struct request *rq)
{
	return rq_issue(rq);
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request *rq, int error, unsigned int nr_bytes)
{
	return rq_complete(rq, nr_bytes);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request *rq, int error, unsigned int nr_bytes)
{
	return rq_complete(rq, nr_bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
