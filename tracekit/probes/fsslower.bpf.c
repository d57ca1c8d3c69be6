// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * fsslower: time a filesystem's read_iter, write_iter, open and fsync file operations from
 * entry to return and report those slower than a threshold.
 *
 * Every operation has an fentry/fexit pair and a kprobe/kretprobe pair; the declaration
 * sets the targets to the chosen filesystem's functions (ext4_file_read_iter, ...) and
 * loads fentry where the kernel can attach it (vmlinux or module BTF), else the kprobes,
 * as libbpf-tools' fsslower does.  Entry keeps (time, file, position) per thread.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tracekit.h"
#include "fsslower.h"

const volatile __u32 targ_tgid = 0;      /* -p (0: all) */
const volatile __u64 min_lat_ns = 10000000; /* report only operations slower than this */

TK_DROP_COUNTER(events);

struct data {
	__u64 ts;
	struct file *fp;
	__s64 start;
	__s64 end;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);     /* thread id */
	__type(value, struct data);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");
TK_EVENT_TYPE(events, struct event);

static __always_inline int entry(struct file *fp, __s64 start, __s64 end)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct data d = {};

	if (!fp)
		return 0;
	if (targ_tgid && (id >> 32) != targ_tgid)
		return 0;
	d.ts = bpf_ktime_get_ns();
	d.fp = fp;
	d.start = start;
	d.end = end;
	bpf_map_update_elem(&starts, &tid, &d, BPF_ANY);
	return 0;
}

static __always_inline int leave(__s64 ret, enum fs_op op)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns(), delta;
	__u32 tid = (__u32)id;
	struct data *d;
	struct event *e;
	struct file *fp;
	const unsigned char *name;

	d = bpf_map_lookup_elem(&starts, &tid);
	if (!d)
		return 0;
	delta = now - d->ts;
	if (now < d->ts || delta <= min_lat_ns)
		goto out;
	e = tk_ringbuf_reserve_or_drop(events, sizeof(*e));
	if (!e)
		goto out;
	e->end_ns = now;
	e->delta_us = delta / 1000;
	e->ret = ret;
	e->op = op;
	e->offset = d->start;
	if (op == FS_FSYNC)
		e->size = d->end - d->start;
	else if (op == FS_OPEN)
		e->size = 0;
	else
		e->size = ret;
	e->pid = id >> 32;
	bpf_get_current_comm(&e->task, sizeof(e->task));
	/* through a local: BPF_CORE_READ(d->fp, ...) would relocate struct data, ours, not the kernel's */
	fp = d->fp;
	name = BPF_CORE_READ(fp, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(&e->file, sizeof(e->file), name) < 0)
		e->file[0] = '\0';
	tk_ringbuf_submit(events, e);
out:
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}

/* --- fentry/fexit (targets set by user space) ------------------------------------------- */

SEC("fentry")
int BPF_PROG(fentry_read, struct kiocb *iocb)
{
	return entry(iocb->ki_filp, iocb->ki_pos, 0);
}

SEC("fexit")
int BPF_PROG(fexit_read, struct kiocb *iocb, struct iov_iter *to, ssize_t ret)
{
	return leave(ret, FS_READ);
}

SEC("fentry")
int BPF_PROG(fentry_write, struct kiocb *iocb)
{
	return entry(iocb->ki_filp, iocb->ki_pos, 0);
}

SEC("fexit")
int BPF_PROG(fexit_write, struct kiocb *iocb, struct iov_iter *from, ssize_t ret)
{
	return leave(ret, FS_WRITE);
}

SEC("fentry")
int BPF_PROG(fentry_open, struct inode *inode, struct file *file)
{
	return entry(file, 0, 0);
}

SEC("fexit")
int BPF_PROG(fexit_open, struct inode *inode, struct file *file, int ret)
{
	return leave(ret, FS_OPEN);
}

SEC("fentry")
int BPF_PROG(fentry_fsync, struct file *file, loff_t start, loff_t end)
{
	return entry(file, start, end);
}

SEC("fexit")
int BPF_PROG(fexit_fsync, struct file *file, loff_t start, loff_t end, int datasync, int ret)
{
	return leave(ret, FS_FSYNC);
}

/* --- kprobe/kretprobe ------------------------------------------------------------------ */

SEC("kprobe")
int BPF_KPROBE(kprobe_read, struct kiocb *iocb)
{
	return entry(BPF_CORE_READ(iocb, ki_filp), BPF_CORE_READ(iocb, ki_pos), 0);
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_read, long ret)
{
	return leave(ret, FS_READ);
}

SEC("kprobe")
int BPF_KPROBE(kprobe_write, struct kiocb *iocb)
{
	return entry(BPF_CORE_READ(iocb, ki_filp), BPF_CORE_READ(iocb, ki_pos), 0);
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_write, long ret)
{
	return leave(ret, FS_WRITE);
}

SEC("kprobe")
int BPF_KPROBE(kprobe_open, struct inode *inode, struct file *file)
{
	return entry(file, 0, 0);
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_open, long ret)
{
	return leave((int)ret, FS_OPEN);
}

SEC("kprobe")
int BPF_KPROBE(kprobe_fsync, struct file *file, loff_t start, loff_t end)
{
	return entry(file, start, end);
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_fsync, long ret)
{
	return leave((int)ret, FS_FSYNC);
}

char LICENSE[] SEC("license") = "GPL";
