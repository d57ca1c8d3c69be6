/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tracekit.h: the few things the bundled probes need beyond Debian's libbpf 1.1.2
 * headers (<bpf/bpf_helpers.h> & co.), plus small helpers shared by every probe.
 *
 * Include it after vmlinux.h and the <bpf/...> headers.  Each definition is guarded so
 * that building against a newer libbpf, which already provides it, keeps working.
 */
#ifndef __TRACEKIT_H
#define __TRACEKIT_H

/* The task comm length; vmlinux.h carries no #defines, only types. */
#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/* "no uid filter": uid_t is 32-bit and (uid_t)-1 is never a real user. */
#ifndef INVALID_UID
#define INVALID_UID ((__u32)-1)
#endif

/* libbpf 1.1 has __kconfig/__ksym, but keep them here for older or trimmed headers. */
#ifndef __kconfig
#define __kconfig __attribute__((section(".kconfig")))
#endif
#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif

/*
 * __arg_ctx (libbpf >= 1.3): tags a global subprogram argument as the program context,
 * so the verifier (or a loader's fallback on kernels before 6.8) treats it as ctx.
 */
#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif

/*
 * bpf_ksym_exists(sym) (libbpf >= 1.2): true when a __weak __ksym/kfunc resolved on this
 * kernel.  The loader writes 0 into the ldimm64 of an unresolved weak symbol, so the
 * verifier sees a constant and drops the dead branch.  The static assertion catches the
 * mistake of using it on a strong symbol (whose address the compiler knows is non-NULL).
 */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) ({                                                        \
	_Static_assert(!__builtin_constant_p(!!(sym)), #sym " must be declared __weak");  \
	!!(sym);                                                                          \
})
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/*
 * Name the record type of ring buffer `map` for user space: clang emits BTF only for
 * types used by a global, a signature or a CO-RE relocation, so a struct that is only
 * filled through bpf_ringbuf_reserve() may be absent from the object's BTF.  The pointer
 * `__event_<map>` (8 zero bytes in .bss, never used) keeps it there, and tracekit's event
 * decoding looks for exactly this name.
 */
#define TK_EVENT_TYPE(map, type) type *__event_##map __attribute__((unused))

/* Bump a 64-bit counter in a global (.bss/.data) variable from any CPU. */
#define tk_count(var) __sync_fetch_and_add(&(var), 1)

/*
 * Count one more of `key` in a hash map of __u64 counters: add to its entry, or insert it
 * at 1.  A racing first insert of the same key on another CPU may win (BPF_NOEXIST fails):
 * then add to that entry.  When the map is full and the key is not in it, bump *dropped.
 */
static __always_inline void tk_map_increment(void *map, const void *key, __u64 *dropped)
{
	static const __u64 one = 1;
	__u64 *n;

	n = bpf_map_lookup_elem(map, key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	if (bpf_map_update_elem(map, key, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(map, key);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			tk_count(*dropped);
	}
}

/*
 * Lost events.  The kernel does not count records a BPF program fails to put in a ring
 * buffer (a full ring: bpf_ringbuf_reserve() returns NULL, bpf_ringbuf_output() an
 * error), so the probe must.  The convention tracekit's readers rely on:
 *
 *     TK_DROP_COUNTER(events);                 // at file scope, once per ring buffer map
 *     e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
 *     if (!e) return 0;                        // already counted
 *     ...
 *     tk_ringbuf_submit(events, e);            // see tk_ringbuf_wakeup() below
 *     tk_ringbuf_output_or_drop(events, &buf, len);
 *
 * TK_DROP_COUNTER(map) declares the global `__u64 tk_dropped_<map>` (zero, so in .bss,
 * mmapped by the loader); a reader of ring buffer <map> finds it by name and reports its
 * growth as `reader.lost`, `Object.lost` sums every tk_dropped_* of the object, and the
 * tools print "Possibly lost N samples".  The counter is a plain global: a probe that
 * counts drops another way can bump it with tk_count(tk_dropped_<map>) itself.
 */
#define TK_DROP_COUNTER(map) __u64 tk_dropped_##map = 0

/*
 * Wake-up flags for a record going into ring buffer <map>: the kernel's own rule (wake the
 * consumer if it had caught up: flags 0), plus a forced wake-up once the ring is a quarter
 * full.  A tracekit reader that batches wake-ups (batch_latency, the bundled tools: 20 ms)
 * stops taking records for a window; the kernel then wakes it no more, and a burst that
 * starts inside the window would overflow the ring before the window ends.  The reader
 * waits for this forced wake-up (edge-triggered epoll) and takes the records at once.
 * Two bpf_ringbuf_query() calls per record; the forced wake-up is an irq_work already
 * pending most of the time.
 */
#define TK_RB_FORCE_FRACTION 4
#define tk_ringbuf_wakeup(map)                                                            \
	(bpf_ringbuf_query(&map, BPF_RB_AVAIL_DATA) >=                                    \
	 bpf_ringbuf_query(&map, BPF_RB_RING_SIZE) / TK_RB_FORCE_FRACTION ? BPF_RB_FORCE_WAKEUP : 0)

/* bpf_ringbuf_submit(rec, ...) for a record reserved from <map>, with tk_ringbuf_wakeup(). */
#define tk_ringbuf_submit(map, rec) bpf_ringbuf_submit(rec, tk_ringbuf_wakeup(map))

/* bpf_ringbuf_reserve(&map, size, 0), counting a failure in tk_dropped_<map>. */
#define tk_ringbuf_reserve_or_drop(map, size) ({                                       \
	void *__tk_rec = bpf_ringbuf_reserve(&map, size, 0);                             \
	if (!__tk_rec)                                                                    \
		tk_count(tk_dropped_##map);                                               \
	__tk_rec;                                                                         \
})

/* bpf_ringbuf_output(&map, data, size, tk_ringbuf_wakeup(map)), counting a failure in
 * tk_dropped_<map>. */
#define tk_ringbuf_output_or_drop(map, data, size) ({                                  \
	long __tk_err = bpf_ringbuf_output(&map, data, size, tk_ringbuf_wakeup(map));    \
	if (__tk_err)                                                                     \
		tk_count(tk_dropped_##map);                                               \
	__tk_err;                                                                         \
})

/* True when a uid filter value means "filter on this uid". */
static __always_inline int tk_uid_filter_set(__u32 uid)
{
	return uid != INVALID_UID;
}

/* Split bpf_get_current_pid_tgid() into the process id (tgid) and thread id (pid). */
static __always_inline void tk_current_ids(__u32 *tgid, __u32 *tid)
{
	__u64 id = bpf_get_current_pid_tgid();

	*tgid = id >> 32;
	*tid = (__u32)id;
}

static __always_inline __u32 tk_current_uid(void)
{
	return (__u32)bpf_get_current_uid_gid();
}

/*
 * Container filters, switched on from Python (tracekit.context.filters):
 *
 *   TK_DECLARE_CGROUP_FILTER()     libbpf-tools' -c/--cgroup PATH: the task is in the
 *                                  cgroup-v2 directory PATH or below it;
 *                                  Probe(cgroup=PATH)
 *   TK_DECLARE_CGROUPMAP_FILTER()  BCC's --cgroupmap MAP: the task's cgroup id is a key of
 *                                  the pinned hash MAP (u64 id -> u64), exactly that cgroup;
 *                                  Probe(cgroupmap=MAP)
 *   TK_DECLARE_MNTNS_FILTER()      BCC's --mntnsmap MAP: the task's mount namespace inode is
 *                                  a key of the pinned hash MAP (u64 inum -> u32);
 *                                  Probe(mntnsmap=MAP)
 *
 * Each declares its map and a knob (off by default) at file scope and defines a
 * tk_*_allowed() check for the program: `if (!tk_cgroup_allowed()) return 0;`.  The
 * mount-namespace check reads task->nsproxy->mnt_ns->ns.inum with CO-RE, so include
 * <bpf/bpf_core_read.h> before using it.
 */
#define TK_DECLARE_CGROUP_FILTER()                                                     \
	const volatile bool tk_filter_cgroup = false;                                      \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);                                       \
		__uint(max_entries, 1);                                                        \
		__type(key, __u32);                                                            \
		__type(value, __u32);                                                          \
	} tk_cgroup_filter SEC(".maps");                                                   \
	static __always_inline bool tk_cgroup_allowed(void)                                \
	{                                                                                  \
		return !tk_filter_cgroup || bpf_current_task_under_cgroup(&tk_cgroup_filter, 0) == 1; \
	}

#define TK_DECLARE_CGROUPMAP_FILTER()                                                  \
	const volatile bool tk_filter_cgroupmap = false;                                   \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_HASH);                                               \
		__uint(max_entries, 1024);                                                     \
		__type(key, __u64);                                                            \
		__type(value, __u64);                                                          \
	} tk_cgroupmap_filter SEC(".maps");                                                \
	static __always_inline bool tk_cgroupmap_allowed(void)                             \
	{                                                                                  \
		__u64 id = bpf_get_current_cgroup_id();                                        \
		return !tk_filter_cgroupmap || bpf_map_lookup_elem(&tk_cgroupmap_filter, &id); \
	}

#define TK_DECLARE_MNTNS_FILTER()                                                      \
	const volatile bool tk_filter_mntns = false;                                       \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_HASH);                                               \
		__uint(max_entries, 1024);                                                     \
		__type(key, __u64);                                                            \
		__type(value, __u32);                                                          \
	} tk_mntns_filter SEC(".maps");                                                    \
	static __always_inline bool tk_mntns_allowed(void)                                 \
	{                                                                                  \
		struct task_struct *task;                                                      \
		__u64 inum;                                                                    \
                                                                                       \
		if (!tk_filter_mntns)                                                          \
			return true;                                                               \
		task = (struct task_struct *)bpf_get_current_task();                           \
		inum = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);                          \
		return bpf_map_lookup_elem(&tk_mntns_filter, &inum) != NULL;                   \
	}

#endif /* __TRACEKIT_H */
