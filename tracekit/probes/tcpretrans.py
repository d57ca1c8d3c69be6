"""tcpretrans: TCP retransmissions (tcp:tcp_retransmit_skb) and, optionally, tail loss
probes (kprobe tcp_send_loss_probe: no tracepoint exists for those).

The object is ``tcpretrans.bpf.o`` (source ``tcpretrans.bpf.c``, record ``tcpretrans.h``).
"""

from __future__ import annotations

from typing import Protocol

from tracekit.errors import NotSupportedError
from tracekit.object import Object
from tracekit.probe import Probe

RETRANSMIT = 1
TLP = 2

_TLP_PROGRAM = "kprobe__tcp_send_loss_probe"


class Retransmit(Protocol):
    """One retransmission or loss probe: struct event of tcpretrans.h."""

    ts: int
    pid: int         # the current task: usually 0 (timers, softirq)
    seq: int         # TCP_SKB_CB(skb)->seq (0 for a loss probe)
    state: int       # TCP state number (tracekit.probes._inet.TCP_STATES)
    af: int
    lport: int
    dport: int
    type: int        # RETRANSMIT or TLP
    saddr: bytes     # 16 bytes, network order (IPv4: the first 4)
    daddr: bytes


class Flow(Protocol):
    """A key of the ``counts`` map (count_mode): struct flow of tcpretrans.h."""

    af: int
    lport: int
    dport: int
    saddr: bytes
    daddr: bytes


class TcpRetrans(Probe[Retransmit]):
    """Retransmits from the tracepoint; ``lossprobe=True`` adds the loss-probe kprobe and
    raises :class:`NotSupportedError` (saying why) on a kernel without kprobes."""

    object = "tcpretrans"
    event = "event"

    targ_family: int = 0         # AF_INET or AF_INET6 only (0: both)
    lossprobe: bool = False      # also trace tail loss probes (needs kprobes)
    count_mode: bool = False     # count per flow in the kernel (map `counts`) instead of events

    def pop_counts(self) -> list[tuple[Flow, int]]:
        """count_mode: ``(flow, retransmits)`` since the last call, the map reset in the same pass."""
        if self.obj is None or not self.obj.loaded:
            from tracekit.errors import ClosedError

            raise ClosedError("TcpRetrans is not started")
        pairs: list[tuple[Flow, int]] = self.obj.maps["counts"].typed.pop_all()
        return pairs

    def configure(self, obj: Object) -> None:
        prog = obj.programs[_TLP_PROGRAM]
        prog.autoload = self.values["lossprobe"]
        if prog.autoload:
            from tracekit.hooks.fallback import why_unsupported

            why = why_unsupported(prog.attach_kind, prog.attach_target)
            if why is not None:
                raise NotSupportedError(
                    f"kprobe {prog.attach_target} (for tail loss probes, which have no tracepoint)",
                    detail=f"{why}; without the loss probes (no -l) retransmits are still traced")
