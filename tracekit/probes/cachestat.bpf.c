// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * cachestat: page cache hits and misses, from counters of page-cache events.
 *
 * Two ways to count, and the declaration loads one of them as a whole:
 *
 * functions (BCC's method, where kprobes or fentry work): calls of the functions that
 *   insert a page into the page cache (filemap_add_folio, add_to_page_cache_lru before
 *   5.16), mark it accessed (folio_mark_accessed / mark_page_accessed), account it dirty
 *   (folio_account_dirtied / account_page_dirtied, else the writeback_dirty_folio/_page
 *   tracepoint) and mark a buffer dirty (mark_buffer_dirty).  Each comes as fentry and
 *   kprobe, attached to whichever name the kernel has.
 *
 * tracepoints (kernels without kprobes or fentry, 6.11+ for mm_filemap_get_pages):
 *   pages read through the page cache (filemap:mm_filemap_get_pages, the range each
 *   read asks for) and faulted in (mm_filemap_fault) are the accesses; pages inserted
 *   (mm_filemap_add_to_page_cache, 1 << order each) the insertions; dirtied folios
 *   (writeback:writeback_dirty_folio) the dirties.  Counted in pages.
 *
 * The counters are plain globals (in .bss, read through the mmap by user space, which
 * reports differences between reads, so nothing is ever reset under the kernel's feet).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"

__u64 apcl = 0;     /* page-cache insertions */
__u64 mpa = 0;      /* accesses */
__u64 mbd = 0;      /* buffers marked dirty (functions only) */
__u64 apd = 0;      /* pages (or folios) accounted dirty */

/* --- functions ------------------------------------------------------------------------ */

SEC("fentry/filemap_add_folio")
int BPF_PROG(fentry_apcl)
{
	tk_count(apcl);
	return 0;
}

SEC("kprobe/filemap_add_folio")
int BPF_KPROBE(kprobe_apcl)
{
	tk_count(apcl);
	return 0;
}

SEC("fentry/folio_mark_accessed")
int BPF_PROG(fentry_mpa)
{
	tk_count(mpa);
	return 0;
}

SEC("kprobe/folio_mark_accessed")
int BPF_KPROBE(kprobe_mpa)
{
	tk_count(mpa);
	return 0;
}

SEC("fentry/mark_buffer_dirty")
int BPF_PROG(fentry_mbd)
{
	tk_count(mbd);
	return 0;
}

SEC("kprobe/mark_buffer_dirty")
int BPF_KPROBE(kprobe_mbd)
{
	tk_count(mbd);
	return 0;
}

SEC("fentry/folio_account_dirtied")
int BPF_PROG(fentry_apd)
{
	tk_count(apd);
	return 0;
}

SEC("kprobe/folio_account_dirtied")
int BPF_KPROBE(kprobe_apd)
{
	tk_count(apd);
	return 0;
}

/* also the tracepoint mode's dirty count (one folio each) */
SEC("tracepoint/writeback/writeback_dirty_folio")
int tp_apd(void *ctx)
{
	tk_count(apd);
	return 0;
}

SEC("tracepoint/writeback/writeback_dirty_page")
int tp_apd_page(void *ctx)
{
	tk_count(apd);
	return 0;
}

/* --- tracepoints ---------------------------------------------------------------------- */

/* 6.1's event had no order field: one page per insertion there */
struct trace_event_raw_mm_filemap_op_page_cache___order {
	unsigned char order;
} __attribute__((preserve_access_index));

SEC("tracepoint/filemap/mm_filemap_add_to_page_cache")
int tp_add_to_page_cache(struct trace_event_raw_mm_filemap_op_page_cache *ctx)
{
	struct trace_event_raw_mm_filemap_op_page_cache___order *o = (void *)ctx;
	__u64 pages = 1;

	if (bpf_core_field_exists(o->order))
		pages = 1ULL << (BPF_CORE_READ(o, order) & 31);
	__sync_fetch_and_add(&apcl, pages);
	return 0;
}

/*
 * filemap_read() calls filemap_get_pages() once per batch of folios, and each call
 * reports the range from the current position to the end of the *request*, so the ranges
 * of one read overlap.  Per thread, remember the last file and range: a range starting
 * further on inside the previous one continues that read and adds only its new pages.
 */
struct last_range {
	__u64 ino;
	__u32 dev;
	__u64 index;
	__u64 last;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);             /* tid */
	__type(value, struct last_range);
} ranges SEC(".maps");

SEC("tracepoint/filemap/mm_filemap_get_pages")
int tp_get_pages(struct trace_event_raw_mm_filemap_op_page_cache_range *ctx)
{
	struct last_range *prev, cur = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 pages;

	cur.ino = ctx->i_ino;
	cur.dev = ctx->s_dev;
	cur.index = ctx->index;
	cur.last = ctx->last_index;
	if (cur.last < cur.index)
		return 0;
	pages = cur.last - cur.index + 1;
	prev = bpf_map_lookup_elem(&ranges, &tid);
	if (prev && prev->ino == cur.ino && prev->dev == cur.dev &&
	    cur.index > prev->index && cur.index <= prev->last) {
		pages = cur.last > prev->last ? cur.last - prev->last : 0;
		if (cur.last < prev->last)
			cur.last = prev->last;
	}
	bpf_map_update_elem(&ranges, &tid, &cur, BPF_ANY);
	__sync_fetch_and_add(&mpa, pages);
	return 0;
}

SEC("tracepoint/filemap/mm_filemap_fault")
int tp_fault(void *ctx)
{
	tk_count(mpa);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
