"""oomkill: OOM killer events (BCC's and libbpf-tools' oomkill).

The object is ``oomkill.bpf.o`` (source ``oomkill.bpf.c``, record ``oomkill.h``).  Hook:
kprobe ``oom_kill_process`` (as BCC and libbpf-tools), else the tracepoint
``oom:mark_victim`` on kernels without kprobes; the tracepoint has no ``oom_control``, so
``pages`` is 0 there, and before Linux 6.8 it has no victim comm either (``tcomm`` empty:
:meth:`OOMKill.decode` fills it from /proc while the victim is still there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from tracekit.probe import Probe


class Kill(Protocol):
    """One OOM kill: struct event of oomkill.h."""

    ts: int        # bpf_ktime_get_ns() (CLOCK_MONOTONIC)
    pages: int     # oc->totalpages (0: not known with the mark_victim hook)
    fpid: int      # the process that triggered the OOM killer
    tpid: int      # the victim
    fcomm: str
    tcomm: str


class OOMKill(Probe[Kill]):
    """kprobe oom_kill_process, else tracepoint oom:mark_victim."""

    object = "oomkill"
    event = "event"
    fallbacks: ClassVar[Mapping[str, Sequence[str]]] = {"oom_kill": ("kprobe_oom_kill_process", "tp_mark_victim")}

    def decode(self, raw: bytes) -> Kill | None:
        assert self.obj is not None
        ev: Any = self.obj.event_type("event").decode(raw)
        if not ev.tcomm:
            try:
                with open(f"/proc/{ev.tpid}/comm") as f:
                    ev = ev._replace(tcomm=f.read().strip())
            except OSError:
                pass
        decoded: Kill = ev
        return decoded

    @property
    def knows_pages(self) -> bool:
        """Whether events carry ``pages`` (the kprobe hook was chosen)."""
        return self.chosen.get("oom_kill", ("",))[0] == "kprobe_oom_kill_process"
