"""fsslower: slow file operations of one filesystem (libbpf-tools' fsslower, BCC's
ext4slower/xfsslower).

The object is ``fsslower.bpf.o`` (source ``fsslower.bpf.c``, record ``fsslower.h``).  The
filesystem's read_iter, write_iter, open and fsync file operations are timed from entry
to return: fentry/fexit where the kernel attaches them (vmlinux or module BTF), else
kprobe/kretprobe -- a fallback chain per hook, so e.g. a kernel without fentry for
modules still works.  Operations slower than ``min_lat_ns`` are reported.

::

    async with FSSlower.for_fs("ext4")(min_lat_ns=0) as probe:
        async for op in probe:
            print(op.task, "RWOS"[op.op], op.size, op.file, op.delta_us)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from tracekit.errors import NotSupportedError, TracekitError
from tracekit.object import Object
from tracekit.probe import Alternative, Probe

#: the file operations' functions per filesystem: read_iter, write_iter, open, fsync
#: (the same four libbpf-tools' fsslower and BCC's ext4slower/xfsslower hook)
FILESYSTEMS: dict[str, tuple[str, str, str, str]] = {
    "btrfs": ("btrfs_file_read_iter", "btrfs_file_write_iter", "btrfs_file_open", "btrfs_sync_file"),
    "ext4": ("ext4_file_read_iter", "ext4_file_write_iter", "ext4_file_open", "ext4_sync_file"),
    "f2fs": ("f2fs_file_read_iter", "f2fs_file_write_iter", "f2fs_file_open", "f2fs_sync_file"),
    "nfs": ("nfs_file_read", "nfs_file_write", "nfs_file_open", "nfs_file_fsync"),
    "xfs": ("xfs_file_read_iter", "xfs_file_write_iter", "xfs_file_open", "xfs_file_fsync"),
}
OPS = ("read", "write", "open", "fsync")
#: fsslower.h's enum fs_op
FS_READ, FS_WRITE, FS_OPEN, FS_FSYNC = range(4)
#: LLONG_MAX: an fsync of the whole file reaches this end
LL_MAX = (1 << 63) - 1


class FileOp(Protocol):
    """One slow operation: struct event of fsslower.h."""

    end_ns: int      # bpf_ktime_get_ns() at return (CLOCK_MONOTONIC)
    delta_us: int
    ret: int         # the function's return value (bytes for read/write)
    size: int        # read/write: ret; fsync: end - start of the range (LL_MAX: whole file); open: 0
    offset: int      # file position at entry (fsync: the range's start)
    pid: int
    op: int          # FS_READ, FS_WRITE, FS_OPEN, FS_FSYNC
    task: str
    file: str        # the dentry name (no path), up to 31 bytes


def chains(fs: str) -> dict[str, list[Alternative]]:
    """The fallback chains for filesystem ``fs``: per operation and side, fentry/fexit on
    its function, else kprobe/kretprobe."""
    if fs not in FILESYSTEMS:
        raise TracekitError(f"unknown filesystem {fs!r}: choose one of {', '.join(sorted(FILESYSTEMS))}")
    out: dict[str, list[Alternative]] = {}
    for op, func in zip(OPS, FILESYSTEMS[fs], strict=True):
        out[f"{op}_entry"] = [(f"fentry_{op}", func), (f"kprobe_{op}", func)]
        out[f"{op}_exit"] = [(f"fexit_{op}", func), (f"kretprobe_{op}", func)]
    return out


class FSSlower(Probe[FileOp]):
    """Slow operations of one filesystem: use :meth:`for_fs` (or Ext4Slower, XFSSlower...)."""

    object = "fsslower"
    event = "event"
    fs: ClassVar[str] = ""

    targ_tgid: int = 0                  # process id (0: all)
    min_lat_ns: int = 10_000_000        # report operations slower than this (0: all)

    def __init__(self, **knobs: Any) -> None:
        if not type(self).fs:
            raise TracekitError("FSSlower needs a filesystem: use FSSlower.for_fs('ext4') (or 'xfs', ...)")
        super().__init__(**knobs)

    def open(self) -> Object:
        # A filesystem built as a module (ext4, xfs on Debian) has no functions to hook until
        # it is loaded: say that, rather than "no function ... in kallsyms" for each hook.
        # /proc/filesystems lists the registered ones (built in or loaded), in one small read.
        if not _registered(self.fs):
            raise NotSupportedError(
                f"tracing {self.fs} operations", None,
                f"{self.fs} is not in /proc/filesystems (not built in, and its module is not loaded): "
                f"mount a {self.fs} filesystem or run 'modprobe {self.fs}' first")
        return super().open()

    @classmethod
    def for_fs(cls, fs: str) -> type[FSSlower]:
        """The declaration for filesystem ``fs`` (one of :data:`FILESYSTEMS`)."""
        found = _CLASSES.get(fs)
        if found is None:
            fb: Mapping[str, Sequence[Alternative]] = chains(fs)
            found = type(f"{fs.capitalize()}Slower", (cls,), {"fs": fs, "fallbacks": fb, "__module__": __name__})
            _CLASSES[fs] = found
        return found


_CLASSES: dict[str, type[FSSlower]] = {}


def _registered(fs: str) -> bool:
    """Whether the kernel has filesystem ``fs`` registered (nfs: nfs or nfs4)."""
    try:
        with open("/proc/filesystems") as f:
            names = {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return True  # cannot tell: let the hooks' own checks speak
    return fs in names or (fs == "nfs" and "nfs4" in names)


Ext4Slower = FSSlower.for_fs("ext4")
XFSSlower = FSSlower.for_fs("xfs")
BtrfsSlower = FSSlower.for_fs("btrfs")
