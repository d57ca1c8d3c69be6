"""sigsnoop: signals (signal:signal_generate), or with ``kill_mode`` the kill(2), tkill(2)
and tgkill(2) calls and their results, as BCC's killsnoop.

The object is ``sigsnoop.bpf.o`` (source ``sigsnoop.bpf.c``, record ``sigsnoop.h``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from tracekit.object import Object
from tracekit.probe import Probe

SRC_GENERATE, SRC_KILL, SRC_TKILL, SRC_TGKILL = 0, 1, 2, 3

_GENERATE = "tracepoint__signal__signal_generate"
_SYSCALLS = tuple(f"tracepoint__syscalls__sys_{d}_{n}" for n in ("kill", "tkill", "tgkill")
                  for d in ("enter", "exit"))


class Signal(Protocol):
    """One signal or kill-family call: struct event of sigsnoop.h."""

    ts: int
    pid: int         # sender process id
    tid: int         # sender thread id
    tpid: int        # target (kill: as given, may be 0, -1 or -pgid)
    sig: int
    ret: int         # syscall return (kill_mode), else the tracepoint's errno field
    result: int      # TRACE_SIGNAL_* of signal_generate (-1 in kill_mode)
    source: int      # SRC_*
    has_tcomm: int
    comm: str
    tcomm: str       # target's comm, when has_tcomm


def sig_mask(signals: Iterable[int]) -> int:
    """The probe's ``sig_mask`` knob for a set of signal numbers (1..63)."""
    mask = 0
    for s in signals:
        if not 0 <= s < 64:
            raise ValueError(f"signal {s} out of range 0..63")
        mask |= 1 << s
    return mask


class SigSnoop(Probe[Signal]):
    """signal:signal_generate, or (``kill_mode=True``) the kill-family syscall tracepoints;
    with kill_mode signal_generate stays attached only to lend the target's comm."""

    object = "sigsnoop"
    event = "event"
    optional_programs = (_GENERATE, *_SYSCALLS)   # tkill/tgkill may be missing on some arches

    filtered_pid: int = 0        # sender process id (0: any)
    target_pid: int = 0          # target (0: any)
    sig_mask: int = 0            # bit n = signal n (0: all)
    failed_only: bool = False
    kill_mode: bool = False

    def configure(self, obj: Object) -> None:
        if not self.values["kill_mode"]:
            for name in _SYSCALLS:
                obj.programs[name].autoload = False
