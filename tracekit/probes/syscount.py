"""syscount: syscall counts (and latency) per syscall or per process, from raw_syscalls.

The object is ``syscount.bpf.o`` (source ``syscount.bpf.c``, value type ``syscount.h``).
Counts accumulate in the hash map ``data`` (u32 syscall number, or tgid with
``count_by_process``, -> ``struct data_t``); :meth:`SysCount.pop` reads and empties it,
one interval's worth.  :func:`syscall_name` / :func:`syscall_number` translate numbers.
"""

from __future__ import annotations

import os
import platform
import re
from typing import NamedTuple

from tracekit.object import Object
from tracekit.probe import Probe


class Count(NamedTuple):
    """One row of a report: a syscall (or a process) with its count and summed latency."""

    key: int          # syscall number, or the tgid with count_by_process
    count: int  # type: ignore[assignment]  # the column's name; shadowing tuple.count is intended
    total_ns: int     # 0 unless measure_latency
    comm: str         # group leader's comm with count_by_process, else ""


class SysCount(Probe[None]):
    """raw_syscalls:sys_exit (and sys_enter for latency), filtered and counted in the kernel.

    Knobs follow the tool's options: ``filter_pid`` (-p, a tgid), ``filter_tid`` (-t),
    ``filter_ppid`` (BCC's -c/--ppid: children of that process), ``filter_failed`` (-x),
    ``filter_errno`` (-e, a positive errno), ``filter_syscall`` (--syscall, a number),
    ``measure_latency`` (-L), ``count_by_process`` (-P).
    """

    object = "syscount"
    event = None

    filter_pid: int = 0
    filter_tid: int = 0
    filter_ppid: int = 0
    filter_failed: bool = False
    filter_errno: int = 0
    filter_syscall: int = -1
    measure_latency: bool = False
    count_by_process: bool = False

    def configure(self, obj: Object) -> None:
        # sys_enter is only needed to time syscalls: without -L it would cost every
        # syscall on the machine a program run for nothing
        if not self.values.get("measure_latency"):
            obj.programs["sys_enter"].autoload = False

    def pop(self) -> list[Count]:
        """The counts since the last call (the map is emptied in the same pass)."""
        assert self.obj is not None
        out = []
        for k, v in self.obj.maps["data"].typed.pop_all():
            out.append(Count(int(k), int(v.count), int(v.total_ns), _text(v.comm)))
        return out


def _text(v: object) -> str:
    if isinstance(v, (bytes, bytearray)):
        return v.split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(v)


# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, through Linux 6.17);
# "-" marks unused numbers.  Other architectures read their <asm/unistd.h> at run time.
_X86_64 = """\
read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select sched_yield
mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep getitimer alarm setitimer
getpid sendfile socket connect accept sendto recvfrom sendmsg recvmsg shutdown bind listen
getsockname getpeername socketpair setsockopt getsockopt clone fork vfork execve exit wait4 kill
uname semget semop semctl shmdt msgget msgsnd msgrcv msgctl fcntl flock fsync fdatasync truncate
ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link unlink symlink readlink chmod
fchmod chown fchown lchown umask gettimeofday getrlimit getrusage sysinfo times ptrace getuid syslog
getgid setuid setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups
setgroups setresuid getresuid setresgid getresgid getpgid setfsuid setfsgid getsid capget capset
rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod uselib
personality ustat statfs fstatfs sysfs getpriority setpriority sched_setparam sched_getparam
sched_setscheduler sched_getscheduler sched_get_priority_max sched_get_priority_min
sched_rr_get_interval mlock munlock mlockall munlockall vhangup modify_ldt pivot_root _sysctl prctl
arch_prctl adjtimex setrlimit chroot sync acct settimeofday mount umount2 swapon swapoff reboot
sethostname setdomainname iopl ioperm create_module init_module delete_module get_kernel_syms
query_module quotactl nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid readahead
setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
removexattr lremovexattr fremovexattr tkill time futex sched_setaffinity sched_getaffinity
set_thread_area io_setup io_destroy io_getevents io_submit io_cancel get_thread_area lookup_dcookie
epoll_create epoll_ctl_old epoll_wait_old remap_file_pages getdents64 set_tid_address
restart_syscall semtimedop fadvise64 timer_create timer_settime timer_gettime timer_getoverrun
timer_delete clock_settime clock_gettime clock_getres clock_nanosleep exit_group epoll_wait
epoll_ctl tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink mq_timedsend
mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl ioprio_set
ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat mkdirat mknodat
fchownat futimesat newfstatat unlinkat renameat linkat symlinkat readlinkat fchmodat faccessat
pselect6 ppoll unshare set_robust_list get_robust_list splice tee sync_file_range vmsplice
move_pages utimensat epoll_pwait signalfd timerfd_create eventfd fallocate timerfd_settime
timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev
rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init fanotify_mark prlimit64 name_to_handle_at
open_by_handle_at clock_adjtime syncfs sendmmsg setns getcpu process_vm_readv process_vm_writev kcmp
finit_module sched_setattr sched_getattr renameat2 seccomp getrandom memfd_create kexec_file_load
bpf execveat userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc
pkey_free statx io_pgetevents rseq - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
- - - - - - pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount
fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2
process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset landlock_add_rule
landlock_restrict_self memfd_secret process_mrelease futex_waitv set_mempolicy_home_node cachestat
fchmodat2 map_shadow_stack futex_wake futex_wait futex_requeue statmount listmount lsm_get_self_attr
lsm_set_self_attr lsm_list_modules mseal setxattrat getxattrat listxattrat removexattrat
open_tree_attr file_getattr file_setattr
"""

_TABLE: dict[int, str] | None = None


def _table() -> dict[int, str]:
    global _TABLE
    if _TABLE is None:
        if platform.machine() == "x86_64":
            _TABLE = {i: n for i, n in enumerate(_X86_64.split()) if n != "-"}
        else:
            _TABLE = _from_headers()
    return _TABLE


def _from_headers() -> dict[int, str]:
    found: dict[int, str] = {}
    for path in ("/usr/include/asm/unistd.h", f"/usr/include/{platform.machine()}-linux-gnu/asm/unistd.h",
                 "/usr/include/asm-generic/unistd.h"):
        if not os.path.exists(path):
            continue
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                m = re.match(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\b", line)
                if m:
                    found.setdefault(int(m[2]), m[1])
        if found:
            break
    return found


def syscall_name(nr: int) -> str:
    """``getppid`` for 110 (x86_64); ``[unknown: N]`` for a number the table lacks (as BCC)."""
    return _table().get(nr, f"[unknown: {nr}]")


def syscall_number(name: str) -> int | None:
    """The number of syscall ``name`` (``sys_`` prefix optional), or None."""
    name = name.removeprefix("sys_")
    return next((nr for nr, n in _table().items() if n == name), None)


def syscall_names() -> dict[int, str]:
    """Every known syscall, number -> name."""
    return dict(_table())
