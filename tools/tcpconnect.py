"""tracekit-tcpconnect: trace active TCP connects, like BCC's tcpconnect.

Columns: [TIME(s)] [UID] PID COMM IP SADDR [LPORT] DADDR DPORT
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from tracekit.probes._inet import addr, ip_version, ports
from tracekit.probes.tcpconnect import INVALID_UID, Connect, Flow, TcpConnect

from .common import HelpFormatter, add_common, resolve_uid, run, run_summary

EPILOG = """\
examples:
  tracekit-tcpconnect           # trace all TCP connect()s
  tracekit-tcpconnect -t        # include timestamps
  tracekit-tcpconnect -p 181    # only trace PID 181
  tracekit-tcpconnect -P 80,81  # only trace destination ports 80 and 81
  tracekit-tcpconnect -4        # only trace IPv4
  tracekit-tcpconnect -L        # include the local port
  tracekit-tcpconnect -U -u 1000  # show UIDs, only UID 1000
  tracekit-tcpconnect -c        # count connects per source/destination/port
  tracekit-tcpconnect --cgroup /sys/fs/cgroup/app   # only tasks in this cgroup (or below)
  tracekit-tcpconnect --cgroupmap /sys/fs/bpf/cg    # only cgroups in this pinned BPF hash
  tracekit-tcpconnect --mntnsmap /sys/fs/bpf/mnt    # only mount namespaces in this pinned hash

Options and columns are BCC's (libbpf-tools' -s/--source-port is accepted as -L).
Hooks: tracepoints sock:inet_sock_set_state (SYN_SENT) and syscalls:sys_exit_connect,
so no kprobes are needed; connects not made through connect(2) (io_uring, TCP fast open
via sendto) are not seen.  The banner goes to stderr, rows to stdout.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tracekit-tcpconnect", description="Trace TCP connects",
                                epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output (seconds)")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-P", "--port", help="comma-separated list of destination ports to trace")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    p.add_argument("-L", "--lport", "-s", "--source-port", action="store_true", dest="lport",
                   help="include LPORT on output")
    p.add_argument("-U", "--print-uid", action="store_true", help="include UID on output")
    p.add_argument("-u", "--uid", help="trace this UID (or user name) only")
    p.add_argument("-c", "--count", action="store_true", help="count connects per src ip and dest ip/port")
    # -c is BCC's --count here, so libbpf-tools' -c/--cgroup is long-only
    p.add_argument("--cgroup", metavar="PATH", help="trace only tasks in this cgroup-v2 directory (or below)")
    p.add_argument("--cgroupmap", metavar="MAP", help="trace only cgroups whose ids are keys of this pinned BPF hash")
    p.add_argument("--mntnsmap", metavar="MAP", help="trace only mount namespaces that are keys of this pinned BPF hash")
    add_common(p)
    args = p.parse_args(argv)
    args.uid = resolve_uid(p, args.uid)
    try:
        args.ports = ports(args.port) if args.port else frozenset()
    except ValueError as e:
        p.error(f"-P/--port: {e}")
    return args


def make_probe(args: argparse.Namespace, *, count_mode: bool = False) -> TcpConnect:
    wanted = args.ports

    class _Filtered(TcpConnect):
        def filter(self, ev: Connect) -> bool:
            return not wanted or ev.dport in wanted

    family = socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else 0
    return _Filtered(targ_tgid=args.pid or 0, targ_uid=args.uid if args.uid is not None else INVALID_UID,
                     targ_family=int(family), count_mode=count_mode, count_lport=count_mode and args.lport,
                     cgroup=args.cgroup,
                     cgroupmap=args.cgroupmap, mntnsmap=args.mntnsmap)


def to_json(ev: Connect) -> dict[str, Any]:
    return {"ts": ev.ts, "pid": ev.pid, "tid": ev.tid, "uid": ev.uid, "comm": ev.comm, "ip": ip_version(ev.af),
            "saddr": addr(ev.af, ev.saddr), "lport": ev.lport, "daddr": addr(ev.af, ev.daddr),
            "dport": ev.dport, "ret": ev.ret}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = make_probe(args)
    banner = "Tracing connect ... Hit Ctrl-C to end"
    if args.count:
        # BCC counts in the kernel: a hash per flow, read (and reset) once at the end
        counter = make_probe(args, count_mode=True)
        once = argparse.Namespace(**{**vars(args), "interval": None, "count": None, "timestamp": False})

        def collect(_: object) -> list[tuple[Flow, int]]:
            return [(k, n) for k, n in counter.pop_counts() if not args.ports or k.dport in args.ports]

        return run_summary(once, counter, collect, lambda d: counts_text(args, d), lambda d: counts_json(args, d),
                           banner=banner)

    first_ts: list[int] = []

    def header() -> str:
        print(banner, file=sys.stderr)
        cols = ""
        if args.timestamp:
            cols += f"{'TIME(s)':<9}"
        if args.print_uid:
            cols += f"{'UID':<6}"
        cols += f"{'PID':<7} {'COMM':<12} {'IP':<2} {'SADDR':<16} "
        if args.lport:
            cols += f"{'LPORT':<6} "
        return cols + f"{'DADDR':<16} {'DPORT':<6}"

    def row(ev: Connect) -> str:
        cols = ""
        if args.timestamp:
            if not first_ts:
                first_ts.append(ev.ts)
            cols += f"{(ev.ts - first_ts[0]) / 1e9:<9.3f}"
        if args.print_uid:
            cols += f"{ev.uid:<6d}"
        cols += f"{ev.pid:<7d} {ev.comm[:12]:<12} {ip_version(ev.af):<2d} {addr(ev.af, ev.saddr):<16} "
        if args.lport:
            cols += f"{ev.lport:<6d} "
        return cols + f"{addr(ev.af, ev.daddr):<16} {ev.dport:<6d}"

    return run(args, probe, header, row, to_json)


def _flows(data: list[tuple[Flow, int]]) -> list[tuple[int, str, str, int, int, int]]:
    # BCC: IPv4 flows first, each family by count, descending
    rows = [(k.af, addr(k.af, k.saddr), addr(k.af, k.daddr), k.dport, k.lport, n) for k, n in data]
    return sorted(rows, key=lambda r: (r[0] != socket.AF_INET, -r[5]))


def counts_text(args: argparse.Namespace, data: list[tuple[Flow, int]]) -> str:
    head = f"{'LADDR':<25} {'RADDR':<25} {'RPORT':<20} {'CONNECTS':<10}"
    lines = [head + (f" {'LPORT':<20}" if args.lport else "")]
    for _af, s, d, dport, lport, n in _flows(data):
        lines.append(f"{s:<25} {d:<25} {dport:<20d} {n:<10d}" + (f" {lport:<20d}" if args.lport else ""))
    return "\n".join(lines)


def counts_json(args: argparse.Namespace, data: list[tuple[Flow, int]]) -> dict[str, Any]:
    flows = []
    for af, s, d, dport, lport, n in _flows(data):
        obj: dict[str, Any] = {"ip": ip_version(af), "saddr": s, "daddr": d, "dport": dport, "connects": n}
        if args.lport:
            obj["lport"] = lport
        flows.append(obj)
    return {"flows": flows}


if __name__ == "__main__":
    raise SystemExit(main())
