/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* fsslower: the record of one slow file operation. */
#ifndef __TRACEKIT_FSSLOWER_H
#define __TRACEKIT_FSSLOWER_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif
/* the dentry name as BCC and libbpf-tools keep it (DNAME_INLINE_LEN) */
#define FSSLOWER_FILE_LEN 32

enum fs_op {
	FS_READ = 0,
	FS_WRITE = 1,
	FS_OPEN = 2,
	FS_FSYNC = 3,
};

struct event {
	__u64 end_ns;         /* bpf_ktime_get_ns() at return */
	__u64 delta_us;       /* latency */
	__s64 ret;            /* the function's return value (bytes for read/write) */
	__s64 size;           /* read/write: ret; fsync: end - start of the range; open: 0 */
	__s64 offset;         /* file position at entry (fsync: start of the range) */
	__u32 pid;            /* process id (tgid) */
	__u32 op;             /* enum fs_op */
	char task[TASK_COMM_LEN];
	char file[FSSLOWER_FILE_LEN];
};

#endif /* __TRACEKIT_FSSLOWER_H */
