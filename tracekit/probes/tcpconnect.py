"""tcpconnect: active TCP connects (IPv4 and IPv6), from tracepoints.

The object is ``tcpconnect.bpf.o`` (source ``tcpconnect.bpf.c``, record ``tcpconnect.h``).
sock:inet_sock_set_state (-> SYN_SENT, in the connecting thread) remembers the socket and
syscalls:sys_exit_connect reports it with its local port and connect()'s result, so the
probe needs no kprobes (BCC and libbpf-tools hook tcp_v4_connect/tcp_v6_connect).
"""

from __future__ import annotations

from typing import Protocol

from tracekit.errors import ClosedError
from tracekit.probe import Probe
from tracekit.probes._inet import addr

#: "no uid filter" (the probe's INVALID_UID)
INVALID_UID = 0xFFFFFFFF


class Connect(Protocol):
    """One connect: struct event of tcpconnect.h."""

    ts: int          # bpf_ktime_get_ns() when connect() returned
    pid: int         # process id (tgid)
    tid: int
    uid: int
    ret: int         # connect()'s return (0, -EINPROGRESS, -ECONNREFUSED, ...)
    af: int          # AF_INET / AF_INET6
    lport: int       # host order
    dport: int
    saddr: bytes     # 16 bytes, network order (IPv4: the first 4)
    daddr: bytes
    comm: str


class Flow(Protocol):
    """A key of the ``counts`` map (count_mode): struct flow of tcpconnect.h."""

    af: int
    lport: int       # 0 unless count_lport
    dport: int
    saddr: bytes
    daddr: bytes


class TcpConnect(Probe[Connect]):
    """sock:inet_sock_set_state + syscalls:sys_exit_connect; filters run in the kernel."""

    object = "tcpconnect"
    event = "event"

    targ_tgid: int = 0              # process id to trace (0: all)
    targ_uid: int = INVALID_UID     # uid to trace
    targ_family: int = 0            # AF_INET or AF_INET6 only (0: both)
    count_mode: bool = False        # count per flow in the kernel (map `counts`) instead of events
    count_lport: bool = False       # count_mode: the local port is part of the flow

    def pop_counts(self) -> list[tuple[Flow, int]]:
        """count_mode: ``(flow, connects)`` since the last call, the map reset in the same pass."""
        if self.obj is None or not self.obj.loaded:
            raise ClosedError("TcpConnect is not started")
        pairs: list[tuple[Flow, int]] = self.obj.maps["counts"].typed.pop_all()
        return pairs

    @staticmethod
    def saddr_str(ev: Connect) -> str:
        return addr(ev.af, ev.saddr)

    @staticmethod
    def daddr_str(ev: Connect) -> str:
        return addr(ev.af, ev.daddr)
