"""execsnoop: execve() with its full argument vector, from syscall tracepoints.

The object is ``execsnoop.bpf.o`` (source ``execsnoop.bpf.c``, record ``execsnoop.h``).
The program sends only the used prefix of ``struct event``: ``args`` holds ``args_count``
NUL-terminated strings in ``args_size`` bytes, which BTF alone cannot describe (it would
read a ``char[7680]`` as one C string: argv[0]).  :meth:`ExecSnoop.decode` reads the fixed
fields at their BTF offsets and splits ``args`` into a ``list[str]``.
"""

from __future__ import annotations

import struct

from tracekit._record import Record
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.errors import TracekitError
from tracekit.object import Object
from tracekit.probe import Probe

#: "no uid filter" (the probe's INVALID_UID)
INVALID_UID = 0xFFFFFFFF
#: the probe's TOTAL_MAX_ARGS: the most arguments it can send
TOTAL_MAX_ARGS = 60

# C type of each fixed field of struct event (execsnoop.h); offsets come from BTF.
_FIELD_FORMATS = {"pid": "i", "ppid": "i", "uid": "I", "retval": "i", "args_count": "i",
                  "args_size": "I", "comm": "16s"}


class Exec(Record):
    """One execve(): the process, its parent, the result and the argument vector.

    ``_asdict()`` gives the fields as a dict (a plain class rather than a dataclass: see
    tracekit._record, start-up cost)."""

    __slots__ = ("pid", "ppid", "uid", "retval", "comm", "args", "truncated")
    _fields = __slots__

    def __init__(self, pid: int, ppid: int, uid: int, retval: int, comm: str, args: list[str],
                 truncated: bool) -> None:
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.retval = retval      # 0, or -errno for a failed exec (seen with ignore_failed=False)
        self.comm = comm
        self.args = args          # argv, argv[0] first (the filename as passed to execve())
        self.truncated = truncated  # the process had more than max_args arguments


class ExecSnoop(Probe[Exec]):
    """syscalls:sys_{enter,exit}_execve; events are :class:`Exec` records."""

    object = "execsnoop"
    event = "event"

    ignore_failed: bool = True    # drop execs that failed
    targ_uid: int = INVALID_UID   # only this uid
    max_args: int = 20            # arguments kept (1..TOTAL_MAX_ARGS)

    _unpack: struct.Struct | None = None
    _order: list[str]
    _args_off = 0

    def configure(self, obj: Object) -> None:
        if not 1 <= self.values["max_args"] <= TOTAL_MAX_ARGS:
            raise TracekitError(f"ExecSnoop.max_args must be between 1 and {TOTAL_MAX_ARGS}, "
                                f"not {self.values['max_args']}")

    def _compile(self, btf: BTF) -> None:
        # One struct.Struct for all fixed fields, at the offsets this build of the object
        # has (they are the object's own BTF, not this kernel's: no CO-RE involved).
        tid = next((i for i in btf.find("event") if btf.kind_of(i) == Kind.STRUCT), None)
        if tid is None:
            raise TracekitError("execsnoop.bpf.o has no 'struct event' in its BTF: rebuild it with "
                                "python -m tracekit.probes.build")
        offs = {m.name: m.bit_offset // 8 for m in btf.type(tid).members}
        fmt, cur = "<", 0
        for name, code in sorted(_FIELD_FORMATS.items(), key=lambda kv: offs[kv[0]]):
            fmt += f"{offs[name] - cur}x{code}" if offs[name] > cur else code
            cur = offs[name] + struct.calcsize("<" + code)
        self._order = sorted(_FIELD_FORMATS, key=lambda n: offs[n])
        self._unpack = struct.Struct(fmt)
        self._args_off = offs["args"]

    def decode(self, raw: bytes) -> Exec:
        if self._unpack is None:
            assert self.obj is not None and self.obj.btf is not None
            self._compile(self.obj.btf)
            assert self._unpack is not None
        v = dict(zip(self._order, self._unpack.unpack_from(raw), strict=True))
        blob = raw[self._args_off : self._args_off + v["args_size"]]
        parts = blob.split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        return Exec(
            v["pid"], v["ppid"], v["uid"], v["retval"],
            v["comm"].split(b"\0", 1)[0].decode("utf-8", "replace"),
            [a.decode("utf-8", "replace") for a in parts],
            truncated=v["args_count"] > self.values["max_args"],
        )
