"""The bpf(2) system call: typed attribute structs and one thin function per command.

Each command gets its own ctypes struct that mirrors one member of the kernel's
``union bpf_attr`` (``tests/unit/test_attr_layout.py`` checks every offset and size
against the running kernel's BTF).  Passing a struct larger than an older kernel knows is
safe: the kernel accepts trailing bytes as long as they are zero, and we only set the
fields a caller asked for.

Functions here return raw results (an :class:`~tracekit.kernel.fd.FD`, bytes, ints) and raise
``tracekit.errors`` exceptions; the friendlier objects live in ``tracekit.kernel.maps`` and
``tracekit.hooks.links``.  Every pointer handed to the kernel points into a ctypes buffer held by
a local variable of the calling function, so it stays alive for the whole syscall.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import re
import resource
from collections.abc import Sequence
from typing import Any, ClassVar

from tracekit._record import Record
from tracekit.errors import (
    RESOURCE_ERRNOS,
    BTFLoadError,
    PermissionDeniedError,
    SyscallError,
    VerifierError,
)
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import diagnose as _diag
from tracekit.uapi import BPF_OBJ_NAME_LEN, Cmd, MapType, ProgType

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64

#: bpf(2) syscall numbers by machine (uapi asm/unistd.h)
_NR_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "s390x": 351, "ppc64le": 361}

#: kernel-internal errno some bpf() paths leak to user space (``-ENOTSUPP``)
ENOTSUPP = 524

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_ulong]

try:
    NR_BPF = _NR_BPF[os.uname().machine]
except KeyError:  # pragma: no cover - exotic architectures
    NR_BPF = -1


# --- attribute structs (one per union bpf_attr member we use) -----------------------------
#
# ``_btf_`` names the union member: its name for named members (``batch``, ``test``, ...),
# or, for anonymous ones, a field that only that member has.  ``_btf_names_`` maps a
# ctypes field to its dotted path in the kernel struct where the names differ.


class _Attr(ctypes.Structure):
    _btf_: str = ""
    _btf_names_: ClassVar[dict[str, str]] = {}


class MapCreateAttr(_Attr):
    _btf_ = "map_type"
    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
        ("value_type_btf_obj_fd", _s32),
        ("map_token_fd", _s32),
        ("excl_prog_hash", _u64),
        ("excl_prog_hash_size", _u32),
        ("_pad0", _u32),
    ]


class MapElemAttr(_Attr):
    """MAP_LOOKUP_ELEM / UPDATE_ELEM / DELETE_ELEM / GET_NEXT_KEY / LOOKUP_AND_DELETE_ELEM."""

    _btf_ = "next_key"
    _fields_ = [
        ("map_fd", _u32),
        ("_pad0", _u32),
        ("key", _u64),
        ("value", _u64),  # also next_key (same union slot)
        ("flags", _u64),
    ]


class MapBatchAttr(_Attr):
    _btf_ = "batch"
    _fields_ = [
        ("in_batch", _u64),
        ("out_batch", _u64),
        ("keys", _u64),
        ("values", _u64),
        ("count", _u32),
        ("map_fd", _u32),
        ("elem_flags", _u64),
        ("flags", _u64),
    ]


class ProgLoadAttr(_Attr):
    _btf_ = "prog_type"
    _fields_ = [
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
        ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32),
        ("line_info", _u64),
        ("line_info_cnt", _u32),
        ("attach_btf_id", _u32),
        ("attach_prog_fd", _u32),  # union with attach_btf_obj_fd
        ("core_relo_cnt", _u32),
        ("fd_array", _u64),
        ("core_relos", _u64),
        ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),
        ("prog_token_fd", _s32),
        ("fd_array_cnt", _u32),
        ("signature", _u64),
        ("signature_size", _u32),
        ("keyring_id", _s32),
    ]


class ObjPinAttr(_Attr):
    _btf_ = "pathname"
    _fields_ = [
        ("pathname", _u64),
        ("bpf_fd", _u32),
        ("file_flags", _u32),
        ("path_fd", _s32),
        ("_pad0", _u32),
    ]


class TestRunAttr(_Attr):
    _btf_ = "test"
    _fields_ = [
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
        ("batch_size", _u32),
        ("_pad0", _u32),
    ]


class GetIdAttr(_Attr):
    """*_GET_NEXT_ID and *_GET_FD_BY_ID: ``start_id`` shares its slot with prog_id/map_id/..."""

    _btf_ = "next_id"
    _fields_ = [
        ("start_id", _u32),
        ("next_id", _u32),
        ("open_flags", _u32),
        ("fd_by_id_token_fd", _s32),
    ]


class InfoAttr(_Attr):
    _btf_ = "info"
    _fields_ = [("bpf_fd", _u32), ("info_len", _u32), ("info", _u64)]


class RawTracepointAttr(_Attr):
    _btf_ = "raw_tracepoint"
    _fields_ = [("name", _u64), ("prog_fd", _u32), ("_pad0", _u32), ("cookie", _u64)]


class BTFLoadAttr(_Attr):
    _btf_ = "btf_log_buf"
    _fields_ = [
        ("btf", _u64),
        ("btf_log_buf", _u64),
        ("btf_size", _u32),
        ("btf_log_size", _u32),
        ("btf_log_level", _u32),
        ("btf_log_true_size", _u32),
        ("btf_flags", _u32),
        ("btf_token_fd", _s32),
    ]


class _LinkPerfEvent(ctypes.Structure):
    _fields_ = [("bpf_cookie", _u64)]


class _LinkTracing(ctypes.Structure):
    _fields_ = [("target_btf_id", _u32), ("_pad0", _u32), ("cookie", _u64)]


class _LinkKprobeMulti(ctypes.Structure):
    _fields_ = [
        ("flags", _u32),
        ("cnt", _u32),
        ("syms", _u64),
        ("addrs", _u64),
        ("cookies", _u64),
    ]


class _LinkUprobeMulti(ctypes.Structure):
    _fields_ = [
        ("path", _u64),
        ("offsets", _u64),
        ("ref_ctr_offsets", _u64),
        ("cookies", _u64),
        ("cnt", _u32),
        ("flags", _u32),
        ("pid", _u32),
        ("_pad0", _u32),
    ]


class _LinkTarget(ctypes.Union):
    _fields_ = [
        ("target_btf_id", _u32),
        ("perf_event", _LinkPerfEvent),
        ("kprobe_multi", _LinkKprobeMulti),
        ("tracing", _LinkTracing),
        ("uprobe_multi", _LinkUprobeMulti),
    ]


class LinkCreateAttr(_Attr):
    _btf_ = "link_create"
    _anonymous_ = ("u",)
    _fields_ = [
        ("prog_fd", _u32),
        ("target_fd", _u32),
        ("attach_type", _u32),
        ("flags", _u32),
        ("u", _LinkTarget),
    ]


class LinkDetachAttr(_Attr):
    _btf_ = "link_detach"
    _fields_ = [("link_fd", _u32)]


class ProgBindMapAttr(_Attr):
    _btf_ = "prog_bind_map"
    _fields_ = [("prog_fd", _u32), ("map_fd", _u32), ("flags", _u32)]


ATTR_STRUCTS: tuple[type[_Attr], ...] = (
    MapCreateAttr, MapElemAttr, MapBatchAttr, ProgLoadAttr, ObjPinAttr, TestRunAttr,
    GetIdAttr, InfoAttr, RawTracepointAttr, BTFLoadAttr, LinkCreateAttr, LinkDetachAttr,
    ProgBindMapAttr,
)


# --- info structs (OBJ_GET_INFO_BY_FD) -------------------------------------------------------


class ProgInfoStruct(ctypes.Structure):
    _btf_ = "bpf_prog_info"
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", _u8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bit 0; the other 31 bits are padding
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad0", _u32),
    ]


class MapInfoStruct(ctypes.Structure):
    _btf_ = "bpf_map_info"
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_id", _u32),
        ("map_extra", _u64),
        ("hash", _u64),
        ("hash_size", _u32),
        ("_pad0", _u32),
    ]


class BTFInfoStruct(ctypes.Structure):
    _btf_ = "bpf_btf_info"
    _fields_ = [
        ("btf", _u64),
        ("btf_size", _u32),
        ("id", _u32),
        ("name", _u64),
        ("name_len", _u32),
        ("kernel_btf", _u32),
    ]


class _LinkInfoRawTp(ctypes.Structure):
    _fields_ = [("tp_name", _u64), ("tp_name_len", _u32), ("_pad0", _u32), ("cookie", _u64)]


class _LinkInfoTracing(ctypes.Structure):
    _fields_ = [("attach_type", _u32), ("target_obj_id", _u32), ("target_btf_id", _u32),
                ("_pad0", _u32), ("cookie", _u64)]


class _LinkInfoPerfTracepoint(ctypes.Structure):
    _fields_ = [("tp_name", _u64), ("name_len", _u32), ("_pad0", _u32), ("cookie", _u64)]


class _LinkInfoPerfKprobe(ctypes.Structure):
    _fields_ = [("func_name", _u64), ("name_len", _u32), ("offset", _u32), ("addr", _u64),
                ("missed", _u64), ("cookie", _u64)]


class _LinkInfoPerfU(ctypes.Union):
    _fields_ = [("tracepoint", _LinkInfoPerfTracepoint), ("kprobe", _LinkInfoPerfKprobe)]


class _LinkInfoPerfEvent(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("type", _u32), ("_pad0", _u32), ("u", _LinkInfoPerfU)]


class _LinkInfoU(ctypes.Union):
    _fields_ = [
        ("raw_tracepoint", _LinkInfoRawTp),
        ("tracing", _LinkInfoTracing),
        ("perf_event", _LinkInfoPerfEvent),
        ("_raw", _u8 * 48),
    ]


class LinkInfoStruct(ctypes.Structure):
    _btf_ = "bpf_link_info"
    _anonymous_ = ("u",)
    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad0", _u32), ("u", _LinkInfoU)]


INFO_STRUCTS: tuple[type[ctypes.Structure], ...] = (
    ProgInfoStruct, MapInfoStruct, BTFInfoStruct, LinkInfoStruct,
)


# --- the raw call ----------------------------------------------------------------------------

_memlock_raised = False


def raise_memlock_rlimit() -> None:
    """Lift RLIMIT_MEMLOCK once; kernels >= 5.11 charge BPF memory to memcg, so failure is fine."""
    global _memlock_raised
    if _memlock_raised:
        return
    _memlock_raised = True
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


def sys_bpf(cmd: int, attr: ctypes.Structure, size: int | None = None) -> tuple[int, int]:
    """Call bpf(cmd, &attr, size); returns ``(result, errno)`` with errno 0 on success."""
    if NR_BPF < 0:  # pragma: no cover
        raise SyscallError("bpf", _errno.ENOSYS, f"unsupported machine {os.uname().machine}")
    ret = _syscall(NR_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr) if size is None else size)
    if ret < 0:
        return ret, ctypes.get_errno()
    return ret, 0


#: what each command makes or needs, for error messages: (kind for resource errors, privileges)
_CMD_KIND: dict[int, tuple[str, tuple[str, ...]]] = {
    Cmd.MAP_CREATE: ("map", _diag.NEEDS_BPF),
    Cmd.PROG_LOAD: ("prog", _diag.NEEDS_BPF),
    Cmd.BTF_LOAD: ("btf", _diag.NEEDS_BPF),
    Cmd.LINK_CREATE: ("attr", _diag.NEEDS_TRACING),
    Cmd.RAW_TRACEPOINT_OPEN: ("attr", _diag.NEEDS_TRACING),
    # the id space is the whole system's: CAP_SYS_ADMIN only (kernel/bpf/syscall.c)
    Cmd.PROG_GET_NEXT_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.MAP_GET_NEXT_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.BTF_GET_NEXT_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.LINK_GET_NEXT_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.PROG_GET_FD_BY_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.MAP_GET_FD_BY_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.BTF_GET_FD_BY_ID: ("attr", _diag.NEEDS_MOUNT),
    Cmd.LINK_GET_FD_BY_ID: ("attr", _diag.NEEDS_MOUNT),
}


def bpf_error(cmd: int, op: str, err: int, detail: str = "", *, size: int | None = None) -> SyscallError:
    """The tracekit exception for ``err`` from bpf(``cmd``): resource errnos name their limit,
    EPERM/EACCES the missing capability."""
    kind, need = _CMD_KIND.get(cmd, ("attr", _diag.NEEDS_BPF))
    return _diag.syscall_error(op or f"bpf({Cmd(cmd).name})", err, detail, kind=kind, need=need, size=size)


def bpf(cmd: int, attr: ctypes.Structure, op: str = "", detail: str = "", *, size: int | None = None) -> int:
    """bpf() raising the tracekit exception for a failure (EINTR is retried)."""
    while True:
        ret, err = sys_bpf(cmd, attr)
        if err == _errno.EINTR:
            continue
        if err:
            raise bpf_error(cmd, op, err, detail, size=size)
        return ret


def _fd_result(cmd: int, attr: ctypes.Structure, what: str, op: str, detail: str = "",
               size: int | None = None) -> FD:
    return FD(bpf(cmd, attr, op, detail, size=size), what)


def _ptr(buf: Any) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _buf(data: bytes | bytearray | memoryview | None) -> ctypes.Array[ctypes.c_char] | None:
    """A ctypes copy of ``data`` (kept alive by the caller) or None."""
    if data is None:
        return None
    data = bytes(data)
    return (ctypes.c_char * max(len(data), 1)).from_buffer_copy(data or b"\0")


_NAME_OK = re.compile(r"[^A-Za-z0-9_.]")


def object_name(name: str) -> bytes:
    """A kernel-acceptable object name: [A-Za-z0-9_.], at most 15 bytes."""
    return _NAME_OK.sub("_", name)[: BPF_OBJ_NAME_LEN - 1].encode()


# --- maps -------------------------------------------------------------------------------------


def map_create(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    *,
    name: str = "",
    flags: int = 0,
    inner_map_fd: int = 0,
    numa_node: int = 0,
    btf_fd: int = 0,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    btf_vmlinux_value_type_id: int = 0,
    map_extra: int = 0,
    map_ifindex: int = 0,
) -> FD:
    """BPF_MAP_CREATE -> the new map's fd."""
    raise_memlock_rlimit()
    a = MapCreateAttr(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=flags,
        inner_map_fd=inner_map_fd,
        numa_node=numa_node,
        map_name=object_name(name),
        map_ifindex=map_ifindex,
        btf_fd=btf_fd,
        btf_key_type_id=btf_key_type_id,
        btf_value_type_id=btf_value_type_id,
        btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
        map_extra=map_extra,
    )
    # what the kernel allocates, roughly: named in an ENOMEM so the user sees what to shrink
    approx = (key_size + value_size) * max_entries if map_type != MapType.RINGBUF else max_entries
    return _fd_result(Cmd.MAP_CREATE, a, f"map {name!r}" if name else "map", f"create map {name!r}",
                      size=approx or None)


def _elem(cmd: int, map_fd: int, key: Any, value: Any, flags: int) -> int:
    """One element command; returns 0 or the errno (the caller decides what is an error)."""
    a = MapElemAttr(map_fd=map_fd, key=_ptr(key), value=_ptr(value), flags=flags)
    while True:
        _, err = sys_bpf(cmd, a)
        if err != _errno.EINTR:
            return err


def map_lookup_elem(map_fd: int, key: Any, value: Any, flags: int = 0) -> int:
    """Look ``key`` up into the ctypes buffer ``value``; returns 0 or errno (ENOENT: absent)."""
    return _elem(Cmd.MAP_LOOKUP_ELEM, map_fd, key, value, flags)


def map_update_elem(map_fd: int, key: Any, value: Any, flags: int = 0) -> int:
    return _elem(Cmd.MAP_UPDATE_ELEM, map_fd, key, value, flags)


def map_delete_elem(map_fd: int, key: Any, flags: int = 0) -> int:
    return _elem(Cmd.MAP_DELETE_ELEM, map_fd, key, None, flags)


def map_lookup_and_delete_elem(map_fd: int, key: Any, value: Any, flags: int = 0) -> int:
    return _elem(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, map_fd, key, value, flags)


def map_get_next_key(map_fd: int, key: Any, next_key: Any) -> int:
    """``key`` None -> first key.  Returns 0 or errno (ENOENT: no more keys)."""
    return _elem(Cmd.MAP_GET_NEXT_KEY, map_fd, key, next_key, 0)


def map_batch(
    cmd: int,
    map_fd: int,
    *,
    in_batch: Any = None,
    out_batch: Any = None,
    keys: Any = None,
    values: Any = None,
    count: int,
    elem_flags: int = 0,
    flags: int = 0,
) -> tuple[int, int]:
    """One MAP_*_BATCH call; returns ``(count processed, errno)``.

    ENOENT from the lookup commands means "no more elements" and still reports a count.
    """
    a = MapBatchAttr(
        in_batch=_ptr(in_batch), out_batch=_ptr(out_batch), keys=_ptr(keys), values=_ptr(values),
        count=count, map_fd=map_fd, elem_flags=elem_flags, flags=flags,
    )
    while True:
        _, err = sys_bpf(cmd, a)
        if err != _errno.EINTR:
            return a.count, err


def map_freeze(map_fd: int) -> None:
    a = MapElemAttr(map_fd=map_fd)
    bpf(Cmd.MAP_FREEZE, a, "freeze map")


# --- pinning ------------------------------------------------------------------------------------


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = ObjPinAttr(pathname=_ptr(p), bpf_fd=fd)
    hint = ""
    _, err = sys_bpf(Cmd.OBJ_PIN, a)
    if err:
        if err == _errno.EEXIST:
            hint = f"{path} already exists: unlink it or choose another path"
        elif err in (_errno.EPERM, _errno.EINVAL, _errno.ENOENT):
            hint = f"{os.path.dirname(path) or '.'} must be a directory on a mounted bpffs (mount -t bpf bpf /sys/fs/bpf)"
        raise bpf_error(Cmd.OBJ_PIN, f"pin to {path}", err, hint)


def obj_get(path: str, file_flags: int = 0) -> FD:
    p = ctypes.create_string_buffer(os.fsencode(path))
    a = ObjPinAttr(pathname=_ptr(p), file_flags=file_flags)
    ret, err = sys_bpf(Cmd.OBJ_GET, a)
    if err:
        hint = "no pinned object there" if err == _errno.ENOENT else ""
        raise bpf_error(Cmd.OBJ_GET, f"open pinned object {path}", err, hint)
    return FD(ret, f"pinned {path}")


# --- programs -----------------------------------------------------------------------------------

#: largest verifier log buffer we grow to (the kernel caps log_size at UINT_MAX >> 2)
MAX_LOG_SIZE = 64 << 20
#: first log buffer size when a failed load is retried with the log on
INITIAL_LOG_SIZE = 256 << 10


def prog_load(
    prog_type: int,
    insns: bytes,
    *,
    license: str = "GPL",
    name: str = "",
    log_level: int = 0,
    log_buf: ctypes.Array[ctypes.c_char] | None = None,
    kern_version: int = 0,
    prog_flags: int = 0,
    expected_attach_type: int = 0,
    prog_btf_fd: int = 0,
    func_info: bytes = b"",
    func_info_rec_size: int = 0,
    line_info: bytes = b"",
    line_info_rec_size: int = 0,
    attach_btf_id: int = 0,
    attach_btf_obj_fd: int = 0,
    attach_prog_fd: int = 0,
    fd_array: Sequence[int] | None = None,
    prog_ifindex: int = 0,
    core_relos: bytes = b"",
    core_relo_rec_size: int = 0,
) -> tuple[int, int, int]:
    """One BPF_PROG_LOAD (EAGAIN/EINTR retried); returns ``(fd or -1, errno, log_true_size)``.

    Most callers want :func:`load_program`, which manages the verifier log.
    """
    if len(insns) % 8:
        raise ValueError(f"instruction bytes length {len(insns)} is not a multiple of 8")
    if attach_btf_obj_fd and attach_prog_fd:
        raise ValueError("attach_btf_obj_fd and attach_prog_fd share one field: give one")
    raise_memlock_rlimit()
    insn_buf = _buf(insns)
    lic = ctypes.create_string_buffer(license.encode())
    fi = _buf(func_info) if func_info else None
    li = _buf(line_info) if line_info else None
    fda = (_u32 * len(fd_array))(*fd_array) if fd_array else None
    # kernel-side CO-RE (5.17+; tracekit.kernel.kcore): bpf_core_relo records the verifier applies
    cr = _buf(core_relos) if core_relos else None
    a = ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // 8,
        insns=_ptr(insn_buf),
        license=_ptr(lic),
        log_level=log_level if log_buf is not None else 0,
        log_size=ctypes.sizeof(log_buf) if log_buf is not None else 0,
        log_buf=_ptr(log_buf),
        kern_version=kern_version,
        prog_flags=prog_flags,
        prog_name=object_name(name),
        prog_ifindex=prog_ifindex,
        expected_attach_type=expected_attach_type,
        prog_btf_fd=prog_btf_fd,
        func_info_rec_size=func_info_rec_size if fi is not None else 0,
        func_info=_ptr(fi),
        func_info_cnt=len(func_info) // func_info_rec_size if fi is not None and func_info_rec_size else 0,
        line_info_rec_size=line_info_rec_size if li is not None else 0,
        line_info=_ptr(li),
        line_info_cnt=len(line_info) // line_info_rec_size if li is not None and line_info_rec_size else 0,
        attach_btf_id=attach_btf_id,
        attach_prog_fd=attach_btf_obj_fd or attach_prog_fd,
        fd_array=_ptr(fda),
        core_relos=_ptr(cr),
        core_relo_cnt=len(core_relos) // core_relo_rec_size if cr is not None and core_relo_rec_size else 0,
        core_relo_rec_size=core_relo_rec_size if cr is not None else 0,
    )
    # The verifier is interrupted by signals with EAGAIN (cilium/ebpf retries likewise).
    for _ in range(10):
        ret, err = sys_bpf(Cmd.PROG_LOAD, a)
        if err not in (_errno.EAGAIN, _errno.EINTR):
            break
    return ret if not err else -1, err, a.log_true_size


def load_program(
    prog_type: int,
    insns: bytes,
    *,
    name: str,
    license: str = "GPL",
    log_level: int = 0,
    hint: str = "",
    kernel_name: str | None = None,
    **kwargs: Any,
) -> FD:
    """Load a program; on failure re-run with the verifier log and raise VerifierError.

    The first attempt has the log off (the fast path pays nothing for it).  A failure is
    retried with ``log_level=1`` (or the caller's level) and a buffer that grows on ENOSPC
    up to :data:`MAX_LOG_SIZE`.  EPERM with an empty log is a privilege problem and raises
    :class:`PermissionDeniedError`.  ``name`` names the program in errors; ``kernel_name``
    (default: ``name``) is what the kernel records (sanitized, 15 bytes at most).
    ``kwargs`` are :func:`prog_load`'s.
    """
    kname = name if kernel_name is None else kernel_name
    log_buf = ctypes.create_string_buffer(INITIAL_LOG_SIZE) if log_level else None
    fd, err, _ = prog_load(prog_type, insns, license=license, name=kname,
                           log_level=log_level, log_buf=log_buf, **kwargs)
    if not err:
        return FD(fd, f"program {name!r}")
    op = f"load program {name!r}"
    if err in RESOURCE_ERRNOS and err != _errno.E2BIG:
        # Out of fds or memory: the verifier may well have accepted the program (the fd is
        # allocated last), so its log says nothing useful; a retry with a log would only
        # hit the same limit.  E2BIG goes on: the log says which size limit it was.
        raise _diag.resource_error(op, err, kind="prog", detail=hint,
                                   size=len(insns) if err == _errno.ENOMEM else None)
    level = log_level or 1
    size = INITIAL_LOG_SIZE
    log = ""
    while True:
        log_buf = ctypes.create_string_buffer(size)
        fd, err, true_size = prog_load(prog_type, insns, license=license, name=kname,
                                       log_level=level, log_buf=log_buf, **kwargs)
        if not err:
            # Rare (e.g. a transient failure the first time): the program loaded.
            return FD(fd, f"program {name!r}")
        log = log_buf.value.decode("utf-8", "replace")
        if err == _errno.ENOSPC and size < MAX_LOG_SIZE:
            size = min(MAX_LOG_SIZE, max(size * 4, true_size + 1))
            continue
        break
    if err == _errno.ENOSPC and size >= MAX_LOG_SIZE:
        log += f"\n(verifier log truncated at {MAX_LOG_SIZE} bytes)"
    if err in RESOURCE_ERRNOS:
        last = log.rstrip().splitlines()[-1:] if log.strip() else []
        detail = "; ".join(x for x in (hint, *(f"verifier: {ln}" for ln in last)) if x)
        raise _diag.resource_error(op, err, kind="prog", detail=detail, log=log,
                                   size=len(insns) if err == _errno.ENOMEM else None)
    if not log.strip():
        if err in (_errno.EPERM, _errno.EACCES):
            need = _diag.NEEDS_TRACING if prog_type in _PERFMON_PROG_TYPES else (
                _diag.NEEDS_BPF if prog_type in _PLAIN_PROG_TYPES else ("CAP_BPF", "CAP_NET_ADMIN"))
            if not _diag.missing_caps(need):
                who = "we run as root" if os.geteuid() == 0 else f"this process has {', '.join(need)}"
                why = (f"the kernel refused although {who}: kernel lockdown, a security module, or an "
                       "attach point this kernel does not allow (e.g. fentry/fexit without ftrace "
                       "direct calls)")
                raise PermissionDeniedError(op, err, f"{hint}; {why}" if hint else why)
            raise _diag.permission_error(op, err, need, hint)
        raise bpf_error(Cmd.PROG_LOAD, op, err, hint or "the kernel gave no verifier log")
    raise VerifierError(name, err, log, hint)


#: program types the kernel loads only with CAP_PERFMON too (is_perfmon_prog_type())
_PERFMON_PROG_TYPES = frozenset(int(ProgType[n]) for n in (
    "KPROBE", "TRACEPOINT", "PERF_EVENT", "RAW_TRACEPOINT", "RAW_TRACEPOINT_WRITABLE", "TRACING",
    "STRUCT_OPS", "EXT", "LSM"))
#: ... and the ones that need neither CAP_PERFMON nor CAP_NET_ADMIN
_PLAIN_PROG_TYPES = frozenset(int(ProgType[n]) for n in ("SOCKET_FILTER", "CGROUP_SKB", "SYSCALL"))


def btf_load(data: bytes, *, log_level: int = 0,
             log_buf: ctypes.Array[ctypes.c_char] | None = None) -> tuple[int, int, int]:
    """One BPF_BTF_LOAD; returns ``(fd or -1, errno, log_true_size)``."""
    raise_memlock_rlimit()
    b = _buf(data)
    a = BTFLoadAttr(
        btf=_ptr(b), btf_size=len(data),
        btf_log_buf=_ptr(log_buf), btf_log_size=ctypes.sizeof(log_buf) if log_buf is not None else 0,
        btf_log_level=log_level if log_buf is not None else 0,
    )
    for _ in range(10):  # bounded: a persistent EAGAIN is reported, not spun on
        ret, err = sys_bpf(Cmd.BTF_LOAD, a)
        if err not in (_errno.EINTR, _errno.EAGAIN):
            break
    return (ret if not err else -1), err, a.btf_log_true_size


def load_btf(data: bytes, name: str = "") -> FD:
    """Load BTF into the kernel; a rejection raises BTFLoadError with the kernel's BTF log."""
    fd, err, _ = btf_load(data)
    if not err:
        return FD(fd, f"BTF {name}".rstrip())
    size = 64 << 10
    log = ""
    while True:
        buf = ctypes.create_string_buffer(size)
        fd, err, true_size = btf_load(data, log_level=1, log_buf=buf)
        if not err:
            return FD(fd, f"BTF {name}".rstrip())
        log = buf.value.decode("utf-8", "replace")
        if err == _errno.ENOSPC and size < MAX_LOG_SIZE:
            size = min(MAX_LOG_SIZE, max(size * 4, true_size + 1))
            continue
        break
    if (err in (_errno.EPERM, _errno.EACCES) and not log.strip()) or err in RESOURCE_ERRNOS - {_errno.E2BIG}:
        # not a rejection of the BTF: a privilege or a limit (the object would load elsewhere)
        raise bpf_error(Cmd.BTF_LOAD, f"load BTF {name}".rstrip(), err, size=len(data))
    if err == _errno.E2BIG:
        raise bpf_error(Cmd.BTF_LOAD, f"load BTF {name}".rstrip(), err,
                        f"{len(data)} bytes" + (f"; kernel: {log.strip().splitlines()[-1]}" if log.strip() else ""))
    what = f"BTF of {name}" if name else "BTF"
    raise BTFLoadError(f"the kernel rejected the {what}: {os.strerror(err)} ({_errno.errorcode.get(err, err)})", log)


# --- links and attachment ---------------------------------------------------------------------


def link_create(
    prog_fd: int,
    target_fd: int,
    attach_type: int,
    *,
    flags: int = 0,
    target_btf_id: int = 0,
    bpf_cookie: int = 0,
    tracing_cookie: int = 0,
    kprobe_multi_syms: Sequence[str] | None = None,
    kprobe_multi_addrs: Sequence[int] | None = None,
    kprobe_multi_cookies: Sequence[int] | None = None,
    kprobe_multi_flags: int = 0,
) -> FD:
    """BPF_LINK_CREATE.

    Only one family of the target union may be used per call: ``bpf_cookie`` (perf event),
    ``target_btf_id``/``tracing_cookie`` (tracing), or the ``kprobe_multi_*`` arguments.
    """
    a = LinkCreateAttr(prog_fd=prog_fd, target_fd=target_fd, attach_type=attach_type, flags=flags)
    keep: list[Any] = []
    if kprobe_multi_syms is not None or kprobe_multi_addrs is not None:
        n = len(kprobe_multi_syms if kprobe_multi_syms is not None else kprobe_multi_addrs)  # type: ignore[arg-type]
        km = a.kprobe_multi
        km.flags = kprobe_multi_flags
        km.cnt = n
        if kprobe_multi_syms is not None:
            strs = [ctypes.create_string_buffer(s.encode()) for s in kprobe_multi_syms]
            arr = (ctypes.c_void_p * n)(*[ctypes.addressof(s) for s in strs])
            keep += [strs, arr]
            km.syms = ctypes.addressof(arr)
        if kprobe_multi_addrs is not None:
            addrs = (_u64 * n)(*kprobe_multi_addrs)
            keep.append(addrs)
            km.addrs = ctypes.addressof(addrs)
        if kprobe_multi_cookies is not None:
            if len(kprobe_multi_cookies) != n:
                raise ValueError("kprobe_multi_cookies must have one cookie per target")
            cks = (_u64 * n)(*kprobe_multi_cookies)
            keep.append(cks)
            km.cookies = ctypes.addressof(cks)
    elif bpf_cookie:
        a.perf_event.bpf_cookie = bpf_cookie
    elif target_btf_id or tracing_cookie:
        a.tracing.target_btf_id = target_btf_id
        a.tracing.cookie = tracing_cookie
    fd = bpf(Cmd.LINK_CREATE, a, "create BPF link")
    del keep
    return FD(fd, "BPF link")


def link_detach(link_fd: int) -> None:
    bpf(Cmd.LINK_DETACH, LinkDetachAttr(link_fd=link_fd), "detach BPF link")


def raw_tracepoint_open(prog_fd: int, name: str | None, cookie: int = 0) -> FD:
    """BPF_RAW_TRACEPOINT_OPEN; ``name`` None attaches a tracing program to its BTF target."""
    n = ctypes.create_string_buffer(name.encode()) if name is not None else None
    a = RawTracepointAttr(name=_ptr(n), prog_fd=prog_fd, cookie=cookie)
    what = f"raw tracepoint {name}" if name else "tracing attachment"
    return _fd_result(Cmd.RAW_TRACEPOINT_OPEN, a, what, f"open {what}")


def prog_bind_map(prog_fd: int, map_fd: int) -> None:
    bpf(Cmd.PROG_BIND_MAP, ProgBindMapAttr(prog_fd=prog_fd, map_fd=map_fd), "bind map to program")


# --- test run -----------------------------------------------------------------------------------


class TestRunResult(Record):
    #: ``ctx_in_after``: ``ctx_in`` as the kernel left it: SYSCALL programs write their context back in place
    __test__ = False  # not a pytest class
    _fields = ("retval", "duration_ns", "data_out", "ctx_out", "ctx_in_after")

    def __init__(self, retval: int, duration_ns: int, data_out: bytes = b"", ctx_out: bytes = b"",
                 ctx_in_after: bytes = b"") -> None:
        self.retval = retval
        self.duration_ns = duration_ns
        self.data_out = data_out
        self.ctx_out = ctx_out
        self.ctx_in_after = ctx_in_after


def prog_test_run(
    prog_fd: int,
    *,
    ctx_in: bytes | None = None,
    ctx_out_size: int = 0,
    data_in: bytes | None = None,
    data_out_size: int = 0,
    repeat: int = 0,
    flags: int = 0,
    cpu: int = 0,
    batch_size: int = 0,
) -> TestRunResult:
    """BPF_PROG_TEST_RUN (a.k.a. BPF_PROG_RUN): run a program once (or ``repeat`` times)."""
    ci = _buf(ctx_in) if ctx_in is not None else None
    di = _buf(data_in) if data_in is not None else None
    co = ctypes.create_string_buffer(ctx_out_size) if ctx_out_size else None
    do = ctypes.create_string_buffer(data_out_size) if data_out_size else None
    a = TestRunAttr(
        prog_fd=prog_fd,
        data_size_in=len(data_in) if data_in is not None else 0, data_in=_ptr(di),
        data_size_out=data_out_size, data_out=_ptr(do),
        ctx_size_in=len(ctx_in) if ctx_in is not None else 0, ctx_in=_ptr(ci),
        ctx_size_out=ctx_out_size, ctx_out=_ptr(co),
        repeat=repeat, flags=flags, cpu=cpu, batch_size=batch_size,
    )
    bpf(Cmd.PROG_TEST_RUN, a, "test-run program")
    return TestRunResult(
        retval=a.retval,
        duration_ns=a.duration,
        data_out=do.raw[: a.data_size_out] if do is not None else b"",
        ctx_out=co.raw[: a.ctx_size_out] if co is not None else b"",
        ctx_in_after=ci.raw[: len(ctx_in)] if ci is not None and ctx_in is not None else b"",
    )


# --- ids and info -------------------------------------------------------------------------------


def _next_id(cmd: int, start: int) -> int | None:
    a = GetIdAttr(start_id=start)
    _, err = sys_bpf(cmd, a)
    if err == _errno.ENOENT:
        return None
    if err:
        raise bpf_error(cmd, "", err)
    return int(a.next_id)


def prog_get_next_id(start: int = 0) -> int | None:
    """The smallest program id greater than ``start`` (None: no more)."""
    return _next_id(Cmd.PROG_GET_NEXT_ID, start)


def map_get_next_id(start: int = 0) -> int | None:
    return _next_id(Cmd.MAP_GET_NEXT_ID, start)


def btf_get_next_id(start: int = 0) -> int | None:
    return _next_id(Cmd.BTF_GET_NEXT_ID, start)


def link_get_next_id(start: int = 0) -> int | None:
    return _next_id(Cmd.LINK_GET_NEXT_ID, start)


def _fd_by_id(cmd: int, obj_id: int, what: str) -> FD:
    a = GetIdAttr(start_id=obj_id)
    ret, err = sys_bpf(cmd, a)
    if err:
        raise bpf_error(cmd, f"open {what} id {obj_id}", err, "no such id" if err == _errno.ENOENT else "")
    return FD(ret, f"{what} id {obj_id}")


def btf_get_fd_by_id(btf_id: int) -> FD:
    return _fd_by_id(Cmd.BTF_GET_FD_BY_ID, btf_id, "BTF")


def prog_get_fd_by_id(prog_id: int) -> FD:
    return _fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id, "program")


def map_get_fd_by_id(map_id: int) -> FD:
    return _fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id, "map")


def link_get_fd_by_id(link_id: int) -> FD:
    return _fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id, "link")


def obj_get_info_by_fd(fd: int, info: ctypes.Structure) -> ctypes.Structure:
    """Fill ``info`` (a *InfoStruct, possibly with pointer fields set) for ``fd``."""
    a = InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, a, "get object info")
    return info


class MapInfo(Record):
    _fields = ("type", "id", "key_size", "value_size", "max_entries", "map_flags", "name", "ifindex", "btf_id",
               "btf_key_type_id", "btf_value_type_id", "btf_vmlinux_value_type_id", "btf_vmlinux_id", "map_extra")

    def __init__(self, type: int, id: int, key_size: int, value_size: int, max_entries: int, map_flags: int,
                 name: str, ifindex: int = 0, btf_id: int = 0, btf_key_type_id: int = 0, btf_value_type_id: int = 0,
                 btf_vmlinux_value_type_id: int = 0, btf_vmlinux_id: int = 0, map_extra: int = 0) -> None:
        self.type = type
        self.id = id
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self.name = name
        self.ifindex = ifindex
        self.btf_id = btf_id
        self.btf_key_type_id = btf_key_type_id
        self.btf_value_type_id = btf_value_type_id
        self.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
        self.btf_vmlinux_id = btf_vmlinux_id
        self.map_extra = map_extra


class ProgInfo(Record):
    _fields = ("type", "id", "tag", "name", "jited_prog_len", "xlated_prog_len", "load_time", "created_by_uid",
               "map_ids", "btf_id", "gpl_compatible", "run_time_ns", "run_cnt", "recursion_misses",
               "verified_insns", "attach_btf_obj_id", "attach_btf_id")

    def __init__(self, type: int, id: int, tag: str, name: str, jited_prog_len: int, xlated_prog_len: int,
                 load_time: int, created_by_uid: int, map_ids: list[int] | None = None, btf_id: int = 0,
                 gpl_compatible: bool = False, run_time_ns: int = 0, run_cnt: int = 0, recursion_misses: int = 0,
                 verified_insns: int = 0, attach_btf_obj_id: int = 0, attach_btf_id: int = 0) -> None:
        self.type = type
        self.id = id
        self.tag = tag
        self.name = name
        self.jited_prog_len = jited_prog_len
        self.xlated_prog_len = xlated_prog_len
        self.load_time = load_time
        self.created_by_uid = created_by_uid
        self.map_ids: list[int] = [] if map_ids is None else map_ids
        self.btf_id = btf_id
        self.gpl_compatible = gpl_compatible
        self.run_time_ns = run_time_ns
        self.run_cnt = run_cnt
        self.recursion_misses = recursion_misses
        self.verified_insns = verified_insns
        self.attach_btf_obj_id = attach_btf_obj_id
        self.attach_btf_id = attach_btf_id


class BTFInfo(Record):
    _fields = ("id", "btf_size", "name", "kernel_btf")

    def __init__(self, id: int, btf_size: int, name: str, kernel_btf: bool) -> None:
        self.id = id
        self.btf_size = btf_size
        self.name = name
        self.kernel_btf = kernel_btf


class LinkInfo(Record):
    #: ``details``: type-specific details: tp_name, cookie, attach_type, target_btf_id, perf_event_type, ...
    _fields = ("type", "id", "prog_id", "details")

    def __init__(self, type: int, id: int, prog_id: int, details: dict[str, Any] | None = None) -> None:
        self.type = type
        self.id = id
        self.prog_id = prog_id
        self.details: dict[str, Any] = {} if details is None else details


def map_info(fd: int) -> MapInfo:
    s = obj_get_info_by_fd(fd, MapInfoStruct())
    return MapInfo(
        type=s.type, id=s.id, key_size=s.key_size, value_size=s.value_size,
        max_entries=s.max_entries, map_flags=s.map_flags, name=s.name.decode(errors="replace"),
        ifindex=s.ifindex, btf_id=s.btf_id, btf_key_type_id=s.btf_key_type_id,
        btf_value_type_id=s.btf_value_type_id,
        btf_vmlinux_value_type_id=s.btf_vmlinux_value_type_id,
        btf_vmlinux_id=s.btf_vmlinux_id, map_extra=s.map_extra,
    )


def prog_info(fd: int) -> ProgInfo:
    s = obj_get_info_by_fd(fd, ProgInfoStruct())
    map_ids: list[int] = []
    if s.nr_map_ids:
        # Second call to fetch the map ids into a buffer sized by the first.
        ids = (_u32 * s.nr_map_ids)()
        s2 = ProgInfoStruct(nr_map_ids=s.nr_map_ids, map_ids=ctypes.addressof(ids))
        obj_get_info_by_fd(fd, s2)
        map_ids = list(ids[: min(s2.nr_map_ids, s.nr_map_ids)])
    return ProgInfo(
        type=s.type, id=s.id, tag=bytes(s.tag).hex(), name=s.name.decode(errors="replace"),
        jited_prog_len=s.jited_prog_len, xlated_prog_len=s.xlated_prog_len,
        load_time=s.load_time, created_by_uid=s.created_by_uid, map_ids=map_ids,
        btf_id=s.btf_id, gpl_compatible=bool(s.gpl_compatible & 1), run_time_ns=s.run_time_ns,
        run_cnt=s.run_cnt, recursion_misses=s.recursion_misses, verified_insns=s.verified_insns,
        attach_btf_obj_id=s.attach_btf_obj_id, attach_btf_id=s.attach_btf_id,
    )


def btf_info(fd: int) -> BTFInfo:
    name = ctypes.create_string_buffer(256)
    s = obj_get_info_by_fd(fd, BTFInfoStruct(name=ctypes.addressof(name), name_len=256))
    return BTFInfo(id=s.id, btf_size=s.btf_size, name=name.value.decode(errors="replace"),
                   kernel_btf=bool(s.kernel_btf))


def btf_data(fd: int) -> bytes:
    """The raw BTF blob behind a BTF fd (two calls: size, then data)."""
    s = obj_get_info_by_fd(fd, BTFInfoStruct())
    buf = ctypes.create_string_buffer(s.btf_size)
    obj_get_info_by_fd(fd, BTFInfoStruct(btf=ctypes.addressof(buf), btf_size=s.btf_size))
    return buf.raw


def link_info(fd: int) -> LinkInfo:
    from tracekit.uapi import LinkType

    name = ctypes.create_string_buffer(256)
    s = LinkInfoStruct()
    # The name buffers live in different union members depending on the link type; set
    # them after a first call tells us the type.
    obj_get_info_by_fd(fd, s)
    t = s.type
    details: dict[str, Any] = {}
    if t == LinkType.RAW_TRACEPOINT:
        s = LinkInfoStruct()
        s.raw_tracepoint.tp_name = ctypes.addressof(name)
        s.raw_tracepoint.tp_name_len = 256
        obj_get_info_by_fd(fd, s)
        details = {"tp_name": name.value.decode(), "cookie": s.raw_tracepoint.cookie}
    elif t == LinkType.TRACING:
        tr = s.tracing
        details = {"attach_type": tr.attach_type, "target_obj_id": tr.target_obj_id,
                   "target_btf_id": tr.target_btf_id, "cookie": tr.cookie}
    elif t == LinkType.PERF_EVENT:
        s = LinkInfoStruct()
        s.perf_event.tracepoint.tp_name = ctypes.addressof(name)
        s.perf_event.tracepoint.name_len = 256
        obj_get_info_by_fd(fd, s)
        pe = s.perf_event
        details = {"perf_event_type": pe.type}
        if pe.type == 5:  # BPF_PERF_EVENT_TRACEPOINT
            details.update(tp_name=name.value.decode(), cookie=pe.tracepoint.cookie)
    return LinkInfo(type=t, id=s.id, prog_id=s.prog_id, details=details)


# --- BPF_ENABLE_STATS (added for tracekit.agent's run-time self-metrics) ---------------------


class EnableStatsAttr(_Attr):
    _btf_ = "enable_stats"
    _fields_ = [("type", _u32)]


#: ``enum bpf_stats_type``: BPF_STATS_RUN_TIME
STATS_RUN_TIME = 0


def enable_stats(stats_type: int = STATS_RUN_TIME) -> FD:
    """BPF_ENABLE_STATS: programs' run_time_ns/run_cnt are counted while the returned fd
    is open (cheaper to scope than the global kernel.bpf_stats_enabled sysctl)."""
    return _fd_result(Cmd.ENABLE_STATS, EnableStatsAttr(type=stats_type), "bpf stats", "enable BPF run-time stats")
