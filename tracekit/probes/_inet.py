"""Helpers shared by the network probes' declarations: address and state formatting."""

from __future__ import annotations

import socket

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6

#: include/net/tcp_states.h, the names BCC prints (tcpretrans' STATE, tcplife's states)
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}

#: IPPROTO_* numbers the probes report, by the names BCC prints
IPPROTO_NAMES = {0: "IP", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPV6", 132: "SCTP", 136: "UDPLITE", 262: "MPTCP"}


def ip_version(af: int) -> int:
    """The IP column: 4 or 6."""
    return 6 if af == AF_INET6 else 4


def addr(af: int, raw: bytes) -> str:
    """Text form of a probe address: 16 bytes in network order, IPv4 in the first 4."""
    if af == AF_INET6:
        return socket.inet_ntop(AF_INET6, bytes(raw[:16]).ljust(16, b"\0"))
    return socket.inet_ntop(AF_INET, bytes(raw[:4]).ljust(4, b"\0"))


def ports(text: str) -> frozenset[int]:
    """``-P 80,443`` style port lists (raises ValueError with a message on bad input)."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise ValueError(f"invalid port {part!r} in {text!r} (want e.g. 80,443)") from None
        if not 0 <= v <= 65535:
            raise ValueError(f"port {v} out of range 0..65535")
        out.add(v)
    return frozenset(out)
