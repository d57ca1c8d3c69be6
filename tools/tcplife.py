"""tracekit-tcplife: TCP sessions with their duration and bytes, like BCC's tcplife.

Columns: [TIME] [TIME(s)] PID COMM [IP] LADDR LPORT RADDR RPORT TX_KB RX_KB MS
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from tracekit.probes._inet import addr, ip_version, ports
from tracekit.probes.tcplife import Session, TcpLife

from .common import Clock, HelpFormatter, add_common, run

EPILOG = """\
examples:
  tracekit-tcplife           # trace all TCP connect()s
  tracekit-tcplife -T        # include time column (HH:MM:SS)
  tracekit-tcplife -w        # wider columns (fit IPv6)
  tracekit-tcplife -stT      # csv output, with times & timestamps
  tracekit-tcplife -p 181    # only trace PID 181
  tracekit-tcplife -L 80     # only trace local port 80
  tracekit-tcplife -L 80,81  # only trace local ports 80 and 81
  tracekit-tcplife -D 80     # only trace remote port 80
  tracekit-tcplife -4        # only trace IPv4 family

Options and columns are BCC's (libbpf-tools has no -t and no CSV).  Hook: tracepoint
sock:inet_sock_set_state (4.16+).  TX_KB is the bytes the peer acknowledged, RX_KB the
bytes received, both in whole KiB; each end of a loopback connection is its own row.
PID/COMM are the process that opened the session (connect) or closed it (passive close).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tracekit-tcplife", description="Trace the lifespan of TCP sessions and summarize",
                                epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("-T", "--time", action="store_true", help="include time column on output (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output (seconds)")
    p.add_argument("-w", "--wide", action="store_true", help="wide column output (fits IPv6 addresses)")
    p.add_argument("-s", "--csv", action="store_true", help="comma separated values output")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-L", "--localport", help="comma-separated list of local ports to trace")
    p.add_argument("-D", "--remoteport", help="comma-separated list of remote ports to trace")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    add_common(p)
    args = p.parse_args(argv)
    try:
        args.lports = ports(args.localport) if args.localport else frozenset()
        args.dports = ports(args.remoteport) if args.remoteport else frozenset()
    except ValueError as e:
        p.error(str(e))
    return args


def make_probe(args: argparse.Namespace) -> TcpLife:
    lports, dports = args.lports, args.dports

    class _Filtered(TcpLife):
        def filter(self, ev: Session) -> bool:
            return (not lports or ev.lport in lports) and (not dports or ev.dport in dports)

    family = socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else 0
    return _Filtered(targ_tgid=args.pid or 0, targ_family=int(family))


def to_json(ev: Session) -> dict[str, Any]:
    return {"ts": ev.ts, "pid": ev.pid, "comm": ev.comm, "ip": ip_version(ev.af), "laddr": addr(ev.af, ev.saddr),
            "lport": ev.lport, "raddr": addr(ev.af, ev.daddr), "rport": ev.dport, "tx_bytes": ev.tx_b,
            "rx_bytes": ev.rx_b, "ms": ev.span_ns / 1e6}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = make_probe(args)
    clock = Clock()
    first_ts: list[int] = []
    if args.csv:
        fmt = "{pid},{comm},{ip},{laddr},{lport},{raddr},{rport},{tx},{rx},{ms:.2f}"
    elif args.wide:
        fmt = "{pid:<5d} {comm:<16.16} {ip:<2} {laddr:<39} {lport:<5d} {raddr:<39} {rport:<5d} {tx:>6d} {rx:>6d} {ms:.2f}"
    else:
        fmt = "{pid:<5d} {comm:<10.10} {ip}{laddr:<15} {lport:<5d} {raddr:<15} {rport:<5d} {tx:>5d} {rx:>5d} {ms:.2f}"

    def header() -> str:
        cols = ""
        if args.time:
            cols += "TIME," if args.csv else f"{'TIME':<8} "
        if args.timestamp:
            cols += "TIME(s)," if args.csv else f"{'TIME(s)':<9} "
        if args.csv:
            return cols + "PID,COMM,IP,LADDR,LPORT,RADDR,RPORT,TX_KB,RX_KB,MS"
        if args.wide:
            return cols + (f"{'PID':<5} {'COMM':<16.16} {'IP':<2} {'LADDR':<39} {'LPORT':<5} {'RADDR':<39} "
                           f"{'RPORT':<5} {'TX_KB':>6} {'RX_KB':>6} MS")
        return cols + f"{'PID':<5} {'COMM':<10.10} {'LADDR':<15} {'LPORT':<5} {'RADDR':<15} {'RPORT':<5} " \
                      f"{'TX_KB':>5} {'RX_KB':>5} MS"

    def row(ev: Session) -> str:
        cols = ""
        if args.time:
            cols += clock.hms() + ("," if args.csv else " ")
        if args.timestamp:
            if not first_ts:
                first_ts.append(ev.ts)
            t = (ev.ts - first_ts[0]) / 1e9
            cols += f"{t:.6f}," if args.csv else f"{t:<9.6f} "
        ip = str(ip_version(ev.af)) if args.wide or args.csv else ""
        return cols + fmt.format(pid=ev.pid, comm=ev.comm, ip=ip, laddr=addr(ev.af, ev.saddr), lport=ev.lport,
                                 raddr=addr(ev.af, ev.daddr), rport=ev.dport, tx=ev.tx_b // 1024,
                                 rx=ev.rx_b // 1024, ms=ev.span_ns / 1e6)

    return run(args, probe, header, row, to_json)


if __name__ == "__main__":
    raise SystemExit(main())
