"""tcplife: TCP sessions with their span and byte counts, from sock:inet_sock_set_state.

The object is ``tcplife.bpf.o`` (source ``tcplife.bpf.c``, record ``tcplife.h``).  One
event per session at CLOSE; each end of a loopback connection is its own session.
"""

from __future__ import annotations

from typing import Protocol

from tracekit.probe import Probe


class Session(Protocol):
    """One closed TCP session: struct event of tcplife.h."""

    ts: int          # bpf_ktime_get_ns() at CLOSE
    span_ns: int     # from the last state below FIN_WAIT1 (normally ESTABLISHED) to CLOSE
    rx_b: int        # bytes received (tcp_sock.bytes_received)
    tx_b: int        # bytes sent and acknowledged (tcp_sock.bytes_acked)
    pid: int         # process that opened it (connect) or closed it (passive close)
    af: int          # AF_INET / AF_INET6
    lport: int
    dport: int
    saddr: bytes     # 16 bytes, network order (IPv4: the first 4)
    daddr: bytes
    comm: str


class TcpLife(Probe[Session]):
    """sock:inet_sock_set_state only (4.16+): no kprobes needed."""

    object = "tcplife"
    event = "event"

    targ_tgid: int = 0           # process id (0: all)
    targ_family: int = 0         # AF_INET or AF_INET6 only (0: both)
