"""Stack-trace maps (``BPF_MAP_TYPE_STACK_TRACE``) and the text forms of a symbolized stack.

A BPF program stores a stack with ``bpf_get_stackid(ctx, &stacks, flags)`` and keeps the
returned id in its own map; user space reads the id's value here:

* a plain stack map holds ``u64`` instruction pointers, leaf first, the unused tail zero;
* a map created with ``BPF_F_STACK_BUILD_ID`` holds ``struct bpf_stack_build_id`` entries
  (``s32 status; u8 build_id[20]; union { u64 offset; u64 ip; }``, 32 bytes): a file's build
  id and file offset when the kernel could read it, else the raw ip (status ``IP``);
* a negative id is the helper's error: ``-EFAULT`` means "no stack of this kind" (the
  kernel stack of a sample taken in user mode) and prints as nothing, anything else
  (``-EEXIST``: a hash collision, ``-ENOMEM``) as ``[Missed User Stack]`` /
  ``[Missed Kernel Stack]``, as BCC does.

The output helpers reproduce BCC's profile/offcputime text exactly: frames
(``name+0xoff [module]``), the multi-line block, and folded lines for flame graphs.
"""

from __future__ import annotations

import errno as _errno
import struct
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from tracekit import uapi
from tracekit.errors import MapError
from tracekit.symbols.resolver import Frame, Symbolizer

BUILD_ID_SIZE = 20
#: sizeof(struct bpf_stack_build_id)
BUILD_ID_ENTRY_SIZE = 32
BPF_STACK_BUILD_ID_EMPTY = 0
BPF_STACK_BUILD_ID_VALID = 1
BPF_STACK_BUILD_ID_IP = 2

MISSED_USER = "[Missed User Stack]"
MISSED_KERNEL = "[Missed Kernel Stack]"

_BID = struct.Struct("<i20sQ")  # status, build_id, offset or ip (at 24: already 8-aligned)


class BuildIdFrame(NamedTuple):
    """One ``struct bpf_stack_build_id``: ``offset`` is a file offset if ``status`` is
    VALID, the raw ip if it is IP."""

    status: int
    build_id: bytes
    offset: int

    @property
    def valid(self) -> bool:
        return self.status == BPF_STACK_BUILD_ID_VALID


def decode_ips(raw: bytes) -> list[int]:
    """The instruction pointers of a stack-map value (stops at the first 0)."""
    n = len(raw) // 8
    ips = struct.unpack_from(f"<{n}Q", raw)
    out: list[int] = []
    for ip in ips:
        if ip == 0:
            break
        out.append(ip)
    return out


def decode_build_id_stack(raw: bytes) -> list[BuildIdFrame]:
    """The entries of a build-id stack-map value (stops at the first EMPTY entry)."""
    out: list[BuildIdFrame] = []
    for k in range(len(raw) // BUILD_ID_ENTRY_SIZE):
        status, bid, off = _BID.unpack_from(raw, k * BUILD_ID_ENTRY_SIZE)
        if status == BPF_STACK_BUILD_ID_EMPTY:
            break
        out.append(BuildIdFrame(status, bid, off))
    return out


def stack_id_missed(stack_id: int) -> bool:
    """The helper failed to record a stack it should have (BCC's ``stack_id_err``)."""
    return stack_id < 0 and stack_id != -_errno.EFAULT


class StackTraces:
    """Reads one stack-trace map and symbolizes its stacks.

    ``stack_map`` is an :class:`tracekit.object.ObjectMap` or a raw
    :class:`tracekit.kernel.maps.Map` (anything with ``lookup``/``keys``/``delete`` and the
    map's ``type``/``flags``).
    """

    def __init__(self, stack_map: Any, symbolizer: Symbolizer | None = None) -> None:
        if int(stack_map.type) != uapi.MapType.STACK_TRACE:
            raise MapError(f"map {getattr(stack_map, 'name', '?')!r} is not a BPF_MAP_TYPE_STACK_TRACE map "
                           f"(type {stack_map.type!r}); pass the map bpf_get_stackid() writes to")
        self.map = stack_map
        self.build_id = bool(int(stack_map.flags) & uapi.BPF_F_STACK_BUILD_ID)
        self.symbolizer = symbolizer if symbolizer is not None else Symbolizer()

    def _raw(self, stack_id: int) -> bytes | None:
        if stack_id < 0:
            return None
        v = self.map.lookup(stack_id.to_bytes(4, "little"))
        return bytes(v) if v is not None else None

    def ips(self, stack_id: int) -> list[int] | None:
        """The ips of stack ``stack_id`` (None for a negative or vanished id).  A build-id
        map gives the ips of its IP-status entries only."""
        raw = self._raw(stack_id)
        if raw is None:
            return None
        if self.build_id:
            return [f.offset for f in decode_build_id_stack(raw) if f.status == BPF_STACK_BUILD_ID_IP]
        return decode_ips(raw)

    def build_id_frames(self, stack_id: int) -> list[BuildIdFrame] | None:
        if not self.build_id:
            raise MapError("this stack map was not created with BPF_F_STACK_BUILD_ID: use ips()")
        raw = self._raw(stack_id)
        return decode_build_id_stack(raw) if raw is not None else None

    def kernel(self, stack_id: int) -> list[Frame]:
        """The symbolized kernel stack, leaf first ([] for a negative or vanished id)."""
        return self.symbolizer.kernel_frames(self.ips(stack_id) or [])

    def user(self, stack_id: int, pid: int) -> list[Frame]:
        """The symbolized user stack of process ``pid``, leaf first."""
        if not self.build_id:
            return self.symbolizer.user_frames(pid, self.ips(stack_id) or [])
        out: list[Frame] = []
        for f in self.build_id_frames(stack_id) or []:
            if f.valid:
                out.append(self.symbolizer.build_id_frame(f.build_id, f.offset, pid))
            else:
                out.append(self.symbolizer.process(pid).resolve(f.offset))
        return out

    def stack_ids(self) -> Iterator[int]:
        for k in self.map.keys():
            yield int.from_bytes(bytes(k), "little")

    def clear(self) -> int:
        """Delete every stack (interval tools do this after each report); how many."""
        n = 0
        for k in list(self.map.keys()):
            if self.map.delete(k):
                n += 1
        return n


# --- text forms --------------------------------------------------------------------------------

FrameLike = Frame | str


def _text(f: FrameLike, **kw: bool) -> str:
    return f if isinstance(f, str) else f.format(**kw)


def _bare(f: FrameLike) -> str:
    return f if isinstance(f, str) else f.bare


def format_stack(frames: Sequence[FrameLike], *, indent: str = "    ", offset: bool = True,
                 module: bool = True, address: bool = False) -> str:
    """One frame per line, leaf first: ``    name+0xoff [module]``."""
    return "".join(f"{indent}{_text(f, offset=offset, module=module, address=address)}\n" for f in frames)


def format_block(comm: str, pid: int, count: int, *, kernel: Sequence[FrameLike] | None = None,
                 user: Sequence[FrameLike] | None = None, kernel_stack_id: int = 0, user_stack_id: int = 0,
                 delimiter: bool = False, offset: bool = True, module: bool = True) -> str:
    """BCC profile's default output for one stack (exactly what its ``print`` calls write).

    ``kernel``/``user`` None leave that part out (-U/-K); a missed stack id (see
    :func:`stack_id_missed`) prints BCC's ``[Missed ... Stack]`` line instead of frames.
    """
    out = []
    if kernel is not None:
        if stack_id_missed(kernel_stack_id):
            out.append(f"    {MISSED_KERNEL}\n")
        else:
            out.append(format_stack(kernel, offset=offset, module=module))
    if user is not None:
        if delimiter and kernel_stack_id >= 0 and user_stack_id >= 0 and kernel is not None:
            out.append("    --\n")
        if stack_id_missed(user_stack_id):
            out.append(f"    {MISSED_USER}\n")
        else:
            out.append(format_stack(user, offset=offset, module=module))
    out.append(f"    {'-':<16} {comm} ({pid})\n")
    out.append(f"        {count}\n\n")
    return "".join(out)


def fold(comm: str, count: int, *, user: Sequence[FrameLike] | None = None,
         kernel: Sequence[FrameLike] | None = None, user_stack_id: int = 0, kernel_stack_id: int = 0,
         delimiter: bool = False, annotate_kernel: bool = False) -> str:
    """A folded stack line for flame graphs: ``comm;user root..leaf;[-;]kernel root..leaf COUNT``.

    Bare names (no offsets or modules), as BCC ``profile -f`` writes them; with
    ``annotate_kernel`` kernel frames get BCC's ``_[k]`` suffix (``-a``).
    """
    parts = [comm]
    if user is not None:
        if stack_id_missed(user_stack_id):
            parts.append(MISSED_USER)
        else:
            parts.extend(_bare(f) for f in reversed(user))
    if kernel is not None:
        if delimiter and user is not None and kernel_stack_id >= 0 and user_stack_id >= 0:
            parts.append("-")
        if stack_id_missed(kernel_stack_id):
            parts.append(MISSED_KERNEL)
        else:
            parts.extend(_bare(f) + ("_[k]" if annotate_kernel else "") for f in reversed(kernel))
    return ";".join(parts) + f" {count}"


__all__ = [
    "StackTraces", "BuildIdFrame", "decode_ips", "decode_build_id_stack", "stack_id_missed",
    "format_stack", "format_block", "fold", "MISSED_USER", "MISSED_KERNEL",
    "BPF_STACK_BUILD_ID_EMPTY", "BPF_STACK_BUILD_ID_VALID", "BPF_STACK_BUILD_ID_IP",
]
