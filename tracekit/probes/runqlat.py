"""runqlat: scheduler run-queue latency histograms (whole system, per process, thread or
PID namespace).

The object is ``runqlat.bpf.o`` (source ``runqlat.bpf.c``, value type ``runqlat.h``):
map ``hists`` holds ``__u32 key -> struct hist {slots[26], sum, comm}``, read with
:meth:`RunQLat.histograms`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tracekit.probe import Alternative, Probe


class RunQLat(Probe[None]):
    """sched_wakeup, sched_wakeup_new and sched_switch: tp_btf, else raw_tp."""

    object = "runqlat"
    event = None
    fallbacks: ClassVar[dict[str, list[Alternative]]] = {
        "wakeup": ["sched_wakeup_btf", "sched_wakeup_raw"],
        "wakeup_new": ["sched_wakeup_new_btf", "sched_wakeup_new_raw"],
        "switch": ["sched_switch_btf", "sched_switch_raw"],
    }

    targ_per_process: bool = False   # -P: key = tgid
    targ_per_thread: bool = False    # -L: key = tid
    targ_per_pidns: bool = False     # --pidnss: key = PID namespace inode
    targ_ms: bool = False            # -m
    targ_tgid: int = 0               # -p: this process only

    def histograms(self, *, reset: bool = True) -> Any:
        """The histograms since the last read (emptied in the same pass when ``reset``),
        each labelled ``key`` (0 when not split); ``labels["comm"]`` names a task of it."""
        assert self.obj is not None
        hs = self.obj.maps["hists"].histogram("log2", slots="libbpf", reset=reset,
                                              unit="msecs" if self.values.get("targ_ms") else "usecs")
        return hs
