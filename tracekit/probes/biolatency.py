"""biolatency: block I/O latency histograms (per disk and/or per request flags).

The object is ``biolatency.bpf.o`` (source ``biolatency.bpf.c``, map types
``biolatency.h``): map ``hists`` holds ``struct hist_key {cmd_flags, dev} -> struct hist
{__u32 slots[27]}``, libbpf-tools' layout, read with :meth:`BioLatency.histograms`.
:func:`disk_names` and :func:`request_flags` are shared with biosnoop.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from tracekit.object import Object
from tracekit.probe import Alternative, Probe


class BioLatency(Probe[None]):
    """block_rq_insert (-Q), block_rq_issue and block_rq_complete: tp_btf, else raw_tp."""

    object = "biolatency"
    event = None
    fallbacks: ClassVar[dict[str, list[Alternative]]] = {
        "insert": ["block_rq_insert_btf", "block_rq_insert_raw"],
        "issue": ["block_rq_issue_btf", "block_rq_issue_raw"],
        "complete": ["block_rq_complete_btf", "block_rq_complete_raw"],
    }

    targ_per_disk: bool = False   # -D: one histogram per disk
    targ_per_flag: bool = False   # -F: one histogram per request op/flags
    targ_queued: bool = False     # -Q: from queue insert, not from issue
    targ_ms: bool = False         # -m: milliseconds
    filter_dev: bool = False      # -d DISK
    targ_dev: int = 0             # its major << 20 | minor

    def configure(self, obj: Object) -> None:
        # without -Q the insert tracepoint is dead weight on every request
        if not self.values.get("targ_queued"):
            for name in ("block_rq_insert_btf", "block_rq_insert_raw"):
                obj.programs[name].autoload = False

    def histograms(self, *, reset: bool = True) -> Any:
        """The histograms since the last read (``reset``: the map is emptied in the same
        pass); a :class:`~tracekit.data.histogram.HistogramSet` labelled by cmd_flags/dev."""
        assert self.obj is not None
        return self.obj.maps["hists"].histogram("log2", slots="libbpf", reset=reset,
                                                unit="msecs" if self.values.get("targ_ms") else "usecs")


# --- disks --------------------------------------------------------------------------------------


def mkdev(major: int, minor: int) -> int:
    """The kernel-internal dev_t the probes report (MKDEV: major << 20 | minor)."""
    return (major << 20) | minor


def disk_names() -> dict[int, str]:
    """Kernel dev_t -> disk name, from /proc/diskstats (as BCC)."""
    names: dict[int, str] = {}
    try:
        with open("/proc/diskstats") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    names[mkdev(int(parts[0]), int(parts[1]))] = parts[2]
    except OSError:
        pass
    return names


def disk_dev(name: str) -> int | None:
    """The dev_t of disk ``name`` (``sda``, ``/dev/loop0``), or None."""
    name = name.removeprefix("/dev/")
    return next((dev for dev, n in disk_names().items() if n == name), None)


# --- request flags ------------------------------------------------------------------------------

# BCC's names and order; each is looked up in the running kernel's BTF (enum req_flag_bits,
# enum req_op), since the bit numbers moved between kernel versions
_BCC_FLAGS = (("NOWAIT", "NoWait"), ("BACKGROUND", "Background"), ("RAHEAD", "ReadAhead"),
              ("IDLE", "Idle"), ("NOMERGE", "NoMerge"), ("PRIO", "Priority"),
              ("FUA", "ForcedUnitAccess"), ("META", "Metadata"), ("SYNC", "Sync"))
_BCC_OPS = (("READ", "Read"), ("WRITE", "Write"), ("FLUSH", "Flush"), ("DISCARD", "Discard"),
            ("SECURE_ERASE", "SecureErase"), ("ZONE_RESET", "ZoneReset"), ("WRITE_SAME", "WriteSame"),
            ("WRITE_ZEROES", "WriteZeros"))


@functools.lru_cache(maxsize=1)
def _req_enums() -> tuple[dict[str, int], dict[str, int]]:
    from tracekit.btf.types import Kind
    from tracekit.kernel import btf as kernel_btf

    vm = kernel_btf.vmlinux()

    def values(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for tid in vm.find(name):
            if vm.kind_of(tid) in (Kind.ENUM, Kind.ENUM64):
                out.update({v.name: v.value for v in vm.type(tid).values})
        return out

    return values("req_flag_bits"), values("req_op")


def request_flags(cmd_flags: int) -> str:
    """BCC's text for a request's op and flags, e.g. ``Sync-Write``."""
    bits, ops = _req_enums()
    op_bits = bits.get("__REQ_FAILFAST_DEV", 8)   # REQ_OP_BITS: the flags start right above the op
    op = cmd_flags & ((1 << op_bits) - 1)
    text = "".join(f"{label}-" for key, label in _BCC_FLAGS
                   if f"__REQ_{key}" in bits and cmd_flags & (1 << bits[f"__REQ_{key}"]))
    name = next((label for key, label in _BCC_OPS if ops.get(f"REQ_OP_{key}") == op), "Unknown")
    return text + name


def request_rwbs(cmd_flags: int) -> str:
    """libbpf-tools' rwbs letters (the block tracepoints' text), e.g. ``WS``."""
    bits, ops = _req_enums()
    op_bits = bits.get("__REQ_FAILFAST_DEV", 8)
    op = cmd_flags & ((1 << op_bits) - 1)

    def has(key: str) -> bool:
        return f"__REQ_{key}" in bits and bool(cmd_flags & (1 << bits[f"__REQ_{key}"]))

    out = "F" if has("PREFLUSH") else ""
    letters = {"WRITE": "W", "DISCARD": "D", "SECURE_ERASE": "DE", "FLUSH": "F", "READ": "R"}
    out += next((v for k, v in letters.items() if ops.get(f"REQ_OP_{k}") == op), "N")
    for key, letter in (("FUA", "F"), ("RAHEAD", "A"), ("SYNC", "S"), ("META", "M")):
        if has(key):
            out += letter
    return out
