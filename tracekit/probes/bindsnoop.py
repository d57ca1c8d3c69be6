"""bindsnoop: bind() of IPv4/IPv6 sockets, from the syscall tracepoints.

The object is ``bindsnoop.bpf.o`` (source ``bindsnoop.bpf.c``, record ``bindsnoop.h``).
BCC and libbpf-tools need kprobes on inet_bind/inet6_bind; the syscalls:sys_{enter,exit}_bind
tracepoints see the same calls everywhere, with the socket found through the fd table.
"""

from __future__ import annotations

from typing import Protocol

from tracekit.errors import ClosedError
from tracekit.probe import Probe

#: "no uid filter" (the probe's INVALID_UID)
INVALID_UID = 0xFFFFFFFF

#: OPTS column letters, lowest bit first (bindsnoop.h OPT_*), as BCC prints them
OPT_LETTERS = "FTNRr"


class Bind(Protocol):
    """One bind(): struct event of bindsnoop.h."""

    ts: int
    pid: int
    tid: int
    uid: int
    ret: int            # 0 or -errno
    bound_dev_if: int   # SO_BINDTODEVICE ifindex (0: none)
    af: int             # AF_INET / AF_INET6
    port: int           # the bound port (the kernel's pick for 0), or the one asked for on failure
    proto: int          # IPPROTO_*
    opts: int           # OPT_* bits
    addr: bytes         # 16 bytes, network order (IPv4: the first 4)
    comm: str


def opts_str(opts: int) -> str:
    """BCC's OPTS column: ``FTNRr`` with ``.`` for each unset option."""
    return "".join(c if opts & (1 << i) else "." for i, c in enumerate(OPT_LETTERS))


class BindKey(Protocol):
    """A key of the ``counts`` map (count_mode): struct bind_key of bindsnoop.h."""

    af: int
    port: int
    addr: bytes


class BindSnoop(Probe[Bind]):
    """syscalls:sys_{enter,exit}_bind; pid/uid filters and failed-bind dropping in the kernel."""

    object = "bindsnoop"
    event = "event"

    targ_tgid: int = 0
    targ_uid: int = INVALID_UID
    ignore_errors: bool = True    # drop failed binds (BCC's default; -E / -x keeps them)
    count_mode: bool = False      # count per (address, port) in the kernel (map `counts`) instead of events

    def pop_counts(self) -> list[tuple[BindKey, int]]:
        """count_mode: ``(key, binds)`` since the last call, the map reset in the same pass."""
        if self.obj is None or not self.obj.loaded:
            raise ClosedError("BindSnoop is not started")
        pairs: list[tuple[BindKey, int]] = self.obj.maps["counts"].typed.pop_all()
        return pairs
