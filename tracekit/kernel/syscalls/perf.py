"""perf_event_open(2) and the perf ioctls tracekit needs to attach BPF programs.

``struct perf_event_attr``'s layout is checked against the kernel's BTF in
``tests/unit/test_attr_layout.py``; its single-bit flags live in one u64 (``flags``) with
the bit numbers below, which the same test checks against the BTF bitfields.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os

from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import diagnose as _diag

_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241, "s390x": 331,
                       "ppc64le": 319}
NR_PERF_EVENT_OPEN = _NR_PERF_EVENT_OPEN.get(os.uname().machine, -1)  # not platform: its import costs ~2-10 ms

# perf_type_id
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5

PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_BPF_OUTPUT = 10

PERF_SAMPLE_RAW = 1 << 10

# perf_event_open flags
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

# bits of perf_event_attr.flags (the C bitfield starting with ``disabled``)
ATTR_FLAG_BITS = {
    "disabled": 0,
    "inherit": 1,
    "pinned": 2,
    "exclusive": 3,
    "exclude_user": 4,
    "exclude_kernel": 5,
    "exclude_hv": 6,
    "exclude_idle": 7,
    "mmap": 8,
    "comm": 9,
    "freq": 10,
    "inherit_stat": 11,
    "enable_on_exec": 12,
    "task": 13,
    "watermark": 14,
    "precise_ip": 15,  # 2 bits
    "mmap_data": 17,
    "sample_id_all": 18,
}
FLAG_DISABLED = 1 << ATTR_FLAG_BITS["disabled"]
FLAG_INHERIT = 1 << ATTR_FLAG_BITS["inherit"]
FLAG_WATERMARK = 1 << ATTR_FLAG_BITS["watermark"]

# ioctls: _IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfEventAttr(ctypes.Structure):
    _btf_ = "perf_event_attr"
    _fields_ = [
        ("type", _u32),
        ("size", _u32),
        ("config", _u64),
        ("sample_period", _u64),  # union with sample_freq
        ("sample_type", _u64),
        ("read_format", _u64),
        ("flags", _u64),  # the bitfield: disabled, inherit, ... (see ATTR_FLAG_BITS)
        ("wakeup_events", _u32),  # union with wakeup_watermark
        ("bp_type", _u32),
        ("config1", _u64),  # union: bp_addr, kprobe_func, uprobe_path
        ("config2", _u64),  # union: bp_len, kprobe_addr, probe_offset
        ("branch_sample_type", _u64),
        ("sample_regs_user", _u64),
        ("sample_stack_user", _u32),
        ("clockid", _s32),
        ("sample_regs_intr", _u64),
        ("aux_watermark", _u32),
        ("sample_max_stack", _u16),
        ("__reserved_2", _u16),
        ("aux_sample_size", _u32),
        ("aux_action", _u32),
        ("sig_data", _u64),
        ("config3", _u64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC, what: str = "perf event") -> FD:
    """perf_event_open(&attr, pid, cpu, group_fd, flags) -> owned fd."""
    if not attr.size:
        attr.size = ctypes.sizeof(attr)
    while True:
        ret = _syscall(ctypes.c_long(NR_PERF_EVENT_OPEN), ctypes.byref(attr), ctypes.c_int(pid),
                       ctypes.c_int(cpu), ctypes.c_int(group_fd), ctypes.c_ulong(flags))
        if ret >= 0:
            return FD(ret, what)
        err = ctypes.get_errno()
        if err != _errno.EINTR:
            break
    op = f"perf_event_open({what})"
    if err in (_errno.EPERM, _errno.EACCES):
        paranoid = _diag._read_small("/proc/sys/kernel/perf_event_paranoid")
        # said once, here: callers pass PermissionDeniedError on untouched
        lacking = _diag.missing_caps(_diag.NEEDS_PERF)  # with CAP_PERFMON the sysctl does not apply
        raise _diag.permission_error(op, err, _diag.NEEDS_PERF,
                                     f"kernel.perf_event_paranoid is {paranoid}" if paranoid and lacking else "")
    hint = "no such event on this kernel" if err == _errno.ENOENT else ""
    raise _diag.syscall_error(op, err, hint, kind="perf", need=_diag.NEEDS_PERF)


def open_tracepoint(tp_id: int, *, pid: int = -1, cpu: int = 0, what: str = "tracepoint") -> FD:
    """A perf event for tracepoint ``tp_id`` for BPF attachment.

    As libbpf does for tracepoint programs: pid -1 on cpu 0 — a BPF program attached to a
    tracepoint runs on every CPU no matter which CPU its perf event was opened on.
    """
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tp_id)
    attr.size = ctypes.sizeof(attr)
    return perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC, what)


def _cpu_list(path: str) -> list[int]:
    """CPU numbers of a sysfs CPU list such as ``0-3,8``."""
    text = _diag.read_kernel_file(path).decode("ascii", "replace").strip()
    cpus: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def possible_cpus() -> list[int]:
    """CPU numbers in /sys/devices/system/cpu/possible."""
    return _cpu_list("/sys/devices/system/cpu/possible")


def online_cpus() -> list[int]:
    """CPU numbers in /sys/devices/system/cpu/online."""
    return _cpu_list("/sys/devices/system/cpu/online")


def _ioctl(fd: int, req: int, arg: int, op: str) -> None:
    try:
        fcntl.ioctl(fd, req, arg)
    except OSError as e:
        raise _diag.syscall_error(op, e.errno or _errno.EIO, kind="perf", need=_diag.NEEDS_PERF) from None


def enable(fd: int) -> None:
    _ioctl(fd, PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")


def disable(fd: int) -> None:
    _ioctl(fd, PERF_EVENT_IOC_DISABLE, 0, "PERF_EVENT_IOC_DISABLE")


def set_bpf(fd: int, prog_fd: int) -> None:
    _ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd, "PERF_EVENT_IOC_SET_BPF")


__all__ = [
    "PerfEventAttr", "perf_event_open", "open_tracepoint", "enable", "disable", "set_bpf",
    "possible_cpus", "online_cpus",
]
