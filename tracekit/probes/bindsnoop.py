"""bindsnoop: bind() of IPv4/IPv6 sockets, from the syscall tracepoints.

The object is ``bindsnoop.bpf.o`` (source ``bindsnoop.bpf.c``, record ``bindsnoop.h``).
BCC and libbpf-tools need kprobes on inet_bind/inet6_bind; the syscalls:sys_{enter,exit}_bind
tracepoints see the same calls everywhere, with the socket found through the fd table.
"""

from __future__ import annotations

from typing import Protocol

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


class BindSnoop(Probe[Bind]):
    """syscalls:sys_{enter,exit}_bind; pid/uid filters and failed-bind dropping in the kernel."""

    object = "bindsnoop"
    event = "event"

    targ_tgid: int = 0
    targ_uid: int = INVALID_UID
    ignore_errors: bool = True    # drop failed binds (BCC's default; -E / -x keeps them)
