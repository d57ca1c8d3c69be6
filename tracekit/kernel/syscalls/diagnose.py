"""Errors that say the truth: which limit ran out, which privilege is missing.

A failed syscall gives an errno; the user needs to know what to change.  This module
turns an errno into the :mod:`tracekit.errors` exception with the live figures filled in:

* EMFILE/ENFILE: how many fds are open and the RLIMIT_NOFILE / fs.file-max value;
* ENOMEM: the memory cgroup limit (kernels >= 5.11 charge BPF memory there), or
  RLIMIT_MEMLOCK (older kernels), and the size that was asked for when known;
* E2BIG: the kernel's size limit for that object;
* EPERM/EACCES: the capabilities the operation needs and which of them this process
  lacks (read from /proc/self/status), or that a kernel file is mounted but not readable
  by our uid.

Everything here runs on the error path only, and must work when no fd is left: every
file read is optional and falls back to an fd-free answer.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import resource
from collections.abc import Sequence

from tracekit.errors import (
    RESOURCE_ERRNOS,
    KernelFileError,
    NotSupportedError,
    PermissionDeniedError,
    ResourceLimitError,
    SyscallError,
    TracekitError,
    resource_error_class,
)

#: capability numbers (linux/capability.h) of the ones tracekit's operations need
CAPS = {
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_IPC_LOCK": 14,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYSLOG": 34,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}

#: what the kernel checks per kind of operation: bpf_capable() is CAP_BPF or CAP_SYS_ADMIN,
#: perfmon_capable() is CAP_PERFMON or CAP_SYS_ADMIN (both since 5.8; before, CAP_SYS_ADMIN)
NEEDS_BPF = ("CAP_BPF",)
NEEDS_TRACING = ("CAP_BPF", "CAP_PERFMON")
NEEDS_PERF = ("CAP_PERFMON",)
NEEDS_MOUNT = ("CAP_SYS_ADMIN",)

#: the kernel's size limits behind E2BIG, per operation kind
_E2BIG_LIMITS = {
    "prog": "the verifier's complexity limit: 1,000,000 processed instructions per program "
            "(BPF_COMPLEXITY_LIMIT_INSNS; 4,096 instructions without CAP_BPF); split the program "
            "into subprograms or tail calls, or bound its loops",
    "btf": "the kernel's BTF size limit (BTF_MAX_SIZE, 16 MiB)",
    "map": "the largest key/value/entry count this map type allows (e.g. KMALLOC_MAX_SIZE per "
           "value, 32-bit sizes); lower value_size or max_entries",
    "perf": "this kernel's struct perf_event_attr size (the kernel is older than the attr "
            "fields tracekit set)",
    "attr": "this kernel's bpf_attr size (a field tracekit set is newer than the kernel)",
}


# --- who we are ------------------------------------------------------------------------------


def effective_caps() -> int | None:
    """The effective capability mask (CapEff in /proc/self/status); None if unreadable."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def has_cap(name: str, caps: int | None = None) -> bool:
    caps = effective_caps() if caps is None else caps
    if caps is None:  # no /proc: assume root has everything, others nothing
        return os.geteuid() == 0
    return bool(caps >> CAPS[name] & 1)


def missing_caps(need: Sequence[str]) -> list[str]:
    """Which of ``need`` this process lacks; CAP_SYS_ADMIN stands in for CAP_BPF and
    CAP_PERFMON as it does in the kernel."""
    caps = effective_caps()
    admin = has_cap("CAP_SYS_ADMIN", caps)
    out = []
    for c in need:
        if has_cap(c, caps) or (admin and c in ("CAP_BPF", "CAP_PERFMON")):
            continue
        out.append(c)
    return out


def privilege_detail(need: Sequence[str]) -> str:
    """One sentence: which privilege is missing and how to get it, or why EPERM anyway."""
    missing = missing_caps(need)
    who = f"uid {os.geteuid()}"
    if not missing:
        return (f"the kernel refused although this process ({who}) has {', '.join(need)}: kernel "
                "lockdown, a security module (SELinux/AppArmor/BPF LSM), "
                "kernel.unprivileged_bpf_disabled or a seccomp filter")
    names = " and ".join(missing)
    alt = ""
    if any(c in ("CAP_BPF", "CAP_PERFMON") for c in missing):
        alt = " (or CAP_SYS_ADMIN)"
    if os.geteuid() == 0:
        # root without the capability: a container, a bounding set or capsh dropped it
        return (f"needs {names}{alt}, which this process lacks although it runs as uid 0 (its "
                f"capabilities were dropped: container, CapabilityBoundingSet, capsh); grant {names}")
    return f"needs {names}{alt}, which this process ({who}) lacks; run as root or grant {names}"


def permission_error(op: str, err: int, need: Sequence[str], detail: str = "") -> PermissionDeniedError:
    """EPERM/EACCES with the missing privilege named; when nothing is missing, the caller's
    ``detail`` (e.g. "not a bpffs") is the explanation and no privilege talk is added."""
    if detail and not missing_caps(need):
        return PermissionDeniedError(op, err, detail)
    hint = privilege_detail(need)
    return PermissionDeniedError(op, err, f"{detail}; {hint}" if detail else hint)


# --- limits ----------------------------------------------------------------------------------


def open_fd_count() -> tuple[int, bool]:
    """(number of open fds, exact?) — without opening one when none is left."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1, True  # minus the listing's own fd
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = soft if soft != resource.RLIM_INFINITY else 1 << 20
    if top > 1 << 17:  # probing each number costs a syscall: be honest instead of slow
        return top, False
    n = 0
    for fd in range(top):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
            n += 1
        except OSError:
            pass
    return n, True


def _read_small(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("ascii", "replace").strip()
    except OSError:
        return None


def _rlim(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def fd_limit(err: int) -> tuple[str, str, str]:
    """(resource, limit, detail) for EMFILE/ENFILE."""
    if err == _errno.ENFILE:
        fmax = _read_small("/proc/sys/fs/file-max")
        nr = _read_small("/proc/sys/fs/file-nr")
        limit = f"fs.file-max = {fmax}" if fmax else "fs.file-max"
        used = f", {nr.split()[0]} in use" if nr else ""
        return ("file descriptors (system-wide)", limit,
                f"the system is out of file descriptors{used}, {limit}; raise it with "
                "sysctl -w fs.file-max=N or close other programs' files")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n, exact = open_fd_count()
    limit = f"RLIMIT_NOFILE soft limit {_rlim(soft)}"
    count = f"{n} open" if exact else f"at least {n} open"
    how = "raise it with ulimit -n" + (f" (hard limit {_rlim(hard)})" if hard != soft else "")
    return ("file descriptors", limit,
            f"out of file descriptors: {count}, {limit}; {how}, or close objects you no longer use")


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split("-")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return True


def _memcg() -> str:
    """'memory cgroup X: limit L, usage U' for this process, or ''."""
    cg = _read_small("/proc/self/cgroup")
    if cg is None:
        return ""
    v2 = v1 = None
    for line in cg.splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2 = path
        elif "memory" in ctrls.split(","):
            v1 = path
    mounts = _read_small_all("/proc/self/mounts") or ""
    for line in mounts.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        if v1 is not None and f[2] == "cgroup" and "memory" in f[3].split(","):
            base = f[1] + v1.rstrip("/")
            lim = _read_small(base + "/memory.limit_in_bytes")
            use = _read_small(base + "/memory.usage_in_bytes")
            if lim is not None:
                return f"memory cgroup {v1}: limit {lim} bytes, usage {use} bytes (memory.limit_in_bytes)"
        if v1 is None and v2 is not None and f[2] == "cgroup2":
            base = f[1] + v2.rstrip("/")
            lim = _read_small(base + "/memory.max")
            use = _read_small(base + "/memory.current")
            if lim is not None:
                return f"memory cgroup {v2}: memory.max {lim}, memory.current {use}"
    return ""


def _read_small_all(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def memory_limit(kind: str, size: int | None = None) -> tuple[str, str, str]:
    """(resource, limit, detail) for ENOMEM when creating a BPF object of ``kind``."""
    asked = f" ({size} bytes asked for)" if size else ""
    if kind == "mmap":
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        limit = f"RLIMIT_AS soft limit {_rlim(soft)}"
        return ("address space", limit, f"out of address space for the mapping{asked}: {limit} "
                "(ulimit -v), or the system is out of memory")
    what = {"prog": "BPF programs", "map": "BPF maps", "btf": "BTF"}.get(kind, "kernel objects")
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    memlock = f"RLIMIT_MEMLOCK soft limit {_rlim(soft)}"
    if _kernel_at_least(5, 11):
        limit = _memcg() or "this process's memory cgroup"
        return (f"memory for {what}", limit,
                f"out of memory for {what}{asked}: since Linux 5.11 it is charged to the {limit}; "
                "raise that limit, free memory, or make the object smaller (e.g. lower max_entries)")
    return (f"memory for {what}", memlock,
            f"out of locked memory for {what}{asked}: this kernel (before 5.11) charges it to "
            f"{memlock}; raise it with ulimit -l unlimited (needs CAP_SYS_RESOURCE) or make the "
            "object smaller")


def resource_error(op: str, err: int, *, kind: str = "", size: int | None = None, detail: str = "",
                   log: str = "") -> ResourceLimitError:
    """The :class:`ResourceLimitError` subclass for ``err`` with the live figures.

    ``kind`` says what was being made: ``prog``, ``map``, ``btf``, ``perf``, ``mmap``,
    ``attr`` or ``file``; ``size`` the bytes asked for (ENOMEM), ``detail`` extra context.
    """
    cls = resource_error_class(err)
    if err in (_errno.EMFILE, _errno.ENFILE):
        res, limit, text = fd_limit(err)
    elif err == _errno.ENOMEM:
        res, limit, text = memory_limit(kind, size)
    elif err == _errno.E2BIG:
        limit = _E2BIG_LIMITS.get(kind, "a kernel size limit")
        res, text = "size limit", f"too large: {limit}"
    else:  # EAGAIN
        if kind == "mmap":
            soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            limit = f"RLIMIT_MEMLOCK soft limit {_rlim(soft)}"
            res, text = "locked memory", f"out of locked memory for the mapping ({limit}); raise it with ulimit -l"
        else:
            limit = ""
            res, text = ("a temporarily unavailable kernel resource",
                         "the kernel said try again (EAGAIN) after retries: a signal storm interrupting "
                         "the verifier, or a resource that is busy; retry later")
    if detail:
        text = f"{detail}: {text}"
    return cls(op, err, text, resource=res, limit=limit, log=log)


def syscall_error(op: str, err: int, detail: str = "", *, kind: str = "", need: Sequence[str] = NEEDS_BPF,
                  size: int | None = None) -> SyscallError:
    """The most specific exception for a failed syscall, with live figures.

    The kernel layer's counterpart of :func:`tracekit.errors.error_for_errno`: resource
    errnos name their limit, EPERM/EACCES name the missing privilege (``need``).
    """
    if err in RESOURCE_ERRNOS:
        return resource_error(op, err, kind=kind, size=size, detail=detail)
    if err in (_errno.EPERM, _errno.EACCES):
        if err == _errno.EPERM and kind in ("map", "prog", "btf") and not missing_caps(need) \
                and not _kernel_at_least(5, 11):
            # before 5.11 an exhausted RLIMIT_MEMLOCK is reported as EPERM, even to root
            res, limit, text = memory_limit(kind, size)
            return resource_error_class(_errno.ENOMEM)(op, err, f"{detail}: {text}" if detail else text,
                                                        resource=res, limit=limit)
        return permission_error(op, err, need, detail)
    return SyscallError(op, err, detail)


# --- kernel files (tracefs, sysfs, procfs) ---------------------------------------------------


def _mount_of(path: str) -> tuple[str, str] | None:
    """(mount point, fs type) of the deepest mount containing ``path``."""
    text = _read_small_all("/proc/self/mounts")
    if text is None:
        return None
    best: tuple[str, str] | None = None
    for line in text.splitlines():
        f = line.split()
        if len(f) < 3:
            continue
        point = f[1].replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[0])):
            best = (point, f[2])
    return best


def can_access(path: str, mode: int) -> bool:
    """access(2) as the kernel checks our opens: with the effective uid, not the real one."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def unreadable_detail(path: str) -> str:
    """'tracefs at /sys/kernel/tracing is mounted but not readable by uid N (mode ...)'."""
    uid = os.geteuid()
    m = _mount_of(path)
    where = path
    if m is not None and m[1] in ("tracefs", "debugfs", "sysfs", "proc", "bpf"):
        point, typ = m
        # name the outermost directory we cannot enter: that is what to fix
        cur = path
        blocked = point
        while cur.startswith(point) and cur != point:
            parent = os.path.dirname(cur)
            if not can_access(parent, os.X_OK):
                blocked = parent
            cur = parent
        try:
            st = os.stat(blocked)
            mode = f" (mode {st.st_mode & 0o7777:04o}, owner uid {st.st_uid})"
        except OSError:
            mode = ""
        if not can_access(point, os.R_OK | os.X_OK):
            return (f"{typ} at {point} is mounted but not readable by uid {uid}{mode}; run as root "
                    "(or with CAP_DAC_OVERRIDE)")
        if blocked != point:
            return f"{blocked} on {typ} at {point} is not accessible to uid {uid}{mode}; run as root"
        where = f"{path} on {typ} at {point}"
    return f"{where} is not accessible to uid {uid}; run as root (or with CAP_DAC_OVERRIDE)"


def file_error(op: str, path: str, e: OSError, *, missing: str = "") -> TracekitError:
    """A TracekitError for an OSError on kernel file ``path`` (never a raw OSError).

    ``missing``: the message for ENOENT (what the absent file means); without it ENOENT
    is a :class:`KernelFileError` like any other errno.
    """
    err = e.errno or _errno.EIO
    if err in RESOURCE_ERRNOS:
        return resource_error(f"{op} {path}", err, kind="file")
    if err in (_errno.EPERM, _errno.EACCES):
        return PermissionDeniedError(f"{op} {path}", err, unreadable_detail(path))
    if err == _errno.ENOENT and missing:
        return NotSupportedError(missing, detail=f"{path} does not exist")
    return KernelFileError(f"{op} {path}", err, e.strerror or "", path=path)


def read_kernel_file(path: str, *, op: str = "read", missing: str = "") -> bytes:
    """The contents of a kernel file, every failure a TracekitError (see :func:`file_error`)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise file_error(op, path, e, missing=missing) from None


__all__ = [
    "CAPS", "NEEDS_BPF", "NEEDS_MOUNT", "NEEDS_PERF", "NEEDS_TRACING", "effective_caps", "file_error",
    "can_access", "has_cap", "missing_caps", "open_fd_count", "permission_error", "privilege_detail", "read_kernel_file",
    "resource_error", "syscall_error", "unreadable_detail",
]
