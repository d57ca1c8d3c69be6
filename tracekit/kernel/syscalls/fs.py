"""tracefs and bpffs: find them, mount them when absent, read tracepoint ids.

Many machines (this project's VMs included) boot without tracefs, debugfs or bpffs
mounted.  Look in /proc/self/mounts first; mount only when nothing suitable is there and
we are root; otherwise say exactly which command would fix it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import os
from collections.abc import Iterable, Iterator

from tracekit.errors import (
    AttachError,
    NotSupportedError,
    PermissionDeniedError,
)
from tracekit.kernel.syscalls import diagnose as _diag

TRACEFS_DEFAULT = "/sys/kernel/tracing"
DEBUGFS_DEFAULT = "/sys/kernel/debug"
BPFFS_DEFAULT = "/sys/fs/bpf"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

_tracefs_cache: str | None = None


def _unescape(field: str) -> str:
    # /proc/self/mounts escapes space, tab, newline and backslash as octal.
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mounts() -> list[tuple[str, str, str]]:
    """``(source, mount point, fs type)`` for every mount this process sees."""
    out = []
    text = _diag.read_kernel_file("/proc/self/mounts").decode("utf-8", "replace")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return out


def find_mount(fstype: str) -> str | None:
    """The first mount point of a filesystem of type ``fstype`` (None if none)."""
    for _, point, typ in mounts():
        if typ == fstype:
            return point
    return None


def mount(fstype: str, target: str, source: str | None = None, flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises PermissionDeniedError/NotSupportedError/SyscallError."""
    src = (source or fstype).encode()
    d = data.encode() if data is not None else None
    if _libc.mount(src, target.encode(), fstype.encode(), flags, d) != 0:
        err = ctypes.get_errno()
        cmd = f"mount -t {fstype} {fstype} {target}"
        if err in (_errno.EPERM, _errno.EACCES):
            raise _diag.permission_error(f"mount {fstype} at {target}", err, _diag.NEEDS_MOUNT,
                                         f"as root: {cmd}")
        if err == _errno.ENODEV:
            raise NotSupportedError(f"{fstype} filesystem", detail=f"this kernel was built without it ({cmd} failed)")
        raise _diag.syscall_error(f"mount {fstype} at {target}", err, f"try: {cmd}", kind="file")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        err = ctypes.get_errno()
        raise _diag.syscall_error(f"umount {target}", err, kind="file", need=_diag.NEEDS_MOUNT)


def tracefs_path() -> str:
    """Path of a usable tracefs (``.../events`` inside), mounting it at /sys/kernel/tracing if needed."""
    global _tracefs_cache
    if _tracefs_cache is not None and os.path.isdir(os.path.join(_tracefs_cache, "events")):
        return _tracefs_cache
    seen = []
    for _, point, typ in mounts():
        if typ == "tracefs":
            seen.append(point)
            if os.path.isdir(os.path.join(point, "events")):
                _tracefs_cache = point
                return point
    for _, point, typ in mounts():
        cand = os.path.join(point, "tracing")
        if typ == "debugfs":
            seen.append(cand)
            if os.path.isdir(os.path.join(cand, "events")):
                _tracefs_cache = cand
                return cand
    # Mounted but unusable to us is not "not mounted": say whose permission is missing.
    for point in seen:
        if not _diag.can_access(point, os.R_OK | os.X_OK):
            raise PermissionDeniedError("find tracefs", _errno.EACCES, _diag.unreadable_detail(point))
    if _diag.missing_caps(_diag.NEEDS_MOUNT):
        raise _diag.permission_error(
            "find tracefs", _errno.EPERM, _diag.NEEDS_MOUNT,
            f"tracefs is not mounted, and mounting it (mount -t tracefs tracefs {TRACEFS_DEFAULT})",
        )
    if not os.path.isdir(TRACEFS_DEFAULT):
        raise NotSupportedError("tracefs", detail=f"{TRACEFS_DEFAULT} does not exist (kernel without CONFIG_TRACING?)")
    mount("tracefs", TRACEFS_DEFAULT)
    _tracefs_cache = TRACEFS_DEFAULT
    return TRACEFS_DEFAULT


def bpffs_path() -> str:
    """Mount point of a bpffs (for pinning), mounting one at /sys/fs/bpf if none is mounted."""
    point = find_mount("bpf")
    if point is not None:
        return point
    if _diag.missing_caps(_diag.NEEDS_MOUNT):
        raise _diag.permission_error(
            "find bpffs", _errno.EPERM, _diag.NEEDS_MOUNT,
            f"no bpf filesystem is mounted, and mounting one (mount -t bpf bpf {BPFFS_DEFAULT})",
        )
    if not os.path.isdir(BPFFS_DEFAULT):
        raise NotSupportedError("bpffs", detail=f"{BPFFS_DEFAULT} does not exist")
    mount("bpf", BPFFS_DEFAULT)
    return BPFFS_DEFAULT


def is_bpffs(path: str) -> bool:
    """Whether ``path`` lies on a bpf filesystem (statfs magic BPF_FS_MAGIC)."""
    class _Statfs(ctypes.Structure):
        # only f_type is read; the rest of struct statfs (120 bytes on 64-bit) is padding
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]

    buf = _Statfs()
    _libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == 0xCAFE4A11)


#: tracepoint ids read inside :func:`tracepoint_id_memo` (None outside it)
_TP_MEMO: dict[tuple[str, str], int] | None = None


@contextlib.contextmanager
def tracepoint_id_memo(pairs: Iterable[tuple[str, str]] = ()) -> Iterator[None]:
    """Read the ids of ``pairs`` now and reuse them until the block ends.

    Attaching several tracepoint programs would otherwise open a tracefs ``id`` file after
    the first program is live, and opensnoop would report its own open as its first row.
    The memo lives only for the block: ids of dynamic events (kprobe/uprobe events) change
    when an event is recreated, so they are never kept longer.
    """
    global _TP_MEMO
    outer = _TP_MEMO
    if outer is None:
        _TP_MEMO = {}
    try:
        for cat, name in pairs:
            tracepoint_id(cat, name)
        yield
    finally:
        if outer is None:
            _TP_MEMO = None


def tracepoint_id(category: str, name: str) -> int:
    """The id of tracepoint ``category:name`` (from tracefs ``events/<cat>/<name>/id``)."""
    memo = _TP_MEMO
    if memo is not None and (category, name) in memo:
        return memo[(category, name)]
    tp_id = _read_tracepoint_id(category, name)
    if memo is not None:
        memo[(category, name)] = tp_id
    return tp_id


def _read_tracepoint_id(category: str, name: str) -> int:
    for part in (category, name):
        if not part or "/" in part or part in (".", ".."):
            raise AttachError(f"invalid tracepoint name {category!r}:{name!r}")
    root = os.path.join(tracefs_path(), "events")
    path = os.path.join(root, category, name, "id")
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        pass
    except OSError as e:  # EMFILE, EACCES, ...: never a raw OSError
        raise _diag.file_error("read tracepoint id", path, e) from None
    else:
        try:
            return int(text.strip())
        except ValueError:
            raise AttachError(f"{path} holds {text[:40]!r}, not a tracepoint id") from None
    raise AttachError(f"tracepoint {category}:{name} does not exist on this kernel"
                      + _near_matches(root, category, name))


def _near_matches(root: str, category: str, name: str) -> str:
    import difflib  # only for an error message: ~1 ms of import kept off the start path

    try:
        cats = [c for c in os.listdir(root) if os.path.isdir(os.path.join(root, c))]
    except OSError:
        return ""
    if category in cats:
        try:
            names = os.listdir(os.path.join(root, category))
        except OSError:
            names = []
        close = [f"{category}:{n}" for n in difflib.get_close_matches(name, names, n=5, cutoff=0.6)]
    else:
        close = []
        for c in difflib.get_close_matches(category, cats, n=3, cutoff=0.6):
            try:
                names = os.listdir(os.path.join(root, c))
            except OSError:
                continue
            close += [f"{c}:{n}" for n in difflib.get_close_matches(name, names, n=3, cutoff=0.5)]
        if not close:
            close = [f"category {c!r}" for c in difflib.get_close_matches(category, cats, n=5, cutoff=0.6)]
    if not close:
        return f" (see {root} for the list)"
    return "; did you mean: " + ", ".join(close) + "?"


def tracepoint_exists(category: str, name: str) -> bool:
    """Whether tracepoint ``category:name`` exists (tracefs is mounted if needed)."""
    if not category or not name or "/" in category or "/" in name:
        return False
    return os.path.exists(os.path.join(tracefs_path(), "events", category, name, "id"))
