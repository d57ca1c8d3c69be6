"""biosnoop: one event per completed block I/O request (who, where, how big, how slow).

The object is ``biosnoop.bpf.o`` (source ``biosnoop.bpf.c``, record ``biosnoop.h``).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from tracekit.probe import Alternative, Probe

#: qdelta_ns when the request's start (and so its issuer) was not seen
NO_QUEUE = 0xFFFFFFFFFFFFFFFF


class BlockIO(Protocol):
    """One completed request: struct event of biosnoop.h, decoded from the object's BTF."""

    ts: int          # bpf_ktime_get_ns() at completion (CLOCK_MONOTONIC)
    delta_ns: int    # issue -> completion
    qdelta_ns: int   # start -> issue, NO_QUEUE when the start was not seen
    sector: int
    len: int         # bytes
    pid: int         # issuer's tgid, 0 when unknown
    cmd_flags: int   # REQ_OP_* | REQ_* (see tracekit.probes.biolatency.request_flags)
    dev: int         # major << 20 | minor
    comm: str        # issuer's comm, "" when unknown


class BioSnoop(Probe[BlockIO]):
    """block_io_start (or blk_account_io_start, or block_getrq), block_rq_issue, block_rq_complete."""

    object = "biosnoop"
    event = "event"
    fallbacks: ClassVar[dict[str, list[Alternative]]] = {
        # tracepoint since 6.5; before, the function it replaced (renamed in 5.16), and
        # where that is inline (6.1) block_getrq, matched to the request by disk + sector
        "start": ["block_io_start_btf", "block_io_start_raw",
                  ("blk_account_io_start_fentry", "__blk_account_io_start"), "blk_account_io_start_fentry",
                  ("blk_account_io_start_kprobe", "__blk_account_io_start"), "blk_account_io_start_kprobe",
                  "block_getrq_btf", "block_getrq_raw"],
        "issue": ["block_rq_issue_btf", "block_rq_issue_raw"],
        "complete": ["block_rq_complete_btf", "block_rq_complete_raw"],
    }

    filter_dev: bool = False   # -d DISK
    targ_dev: int = 0          # its major << 20 | minor
