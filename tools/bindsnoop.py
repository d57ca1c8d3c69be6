"""tracekit-bindsnoop: trace bind() of IPv4 and IPv6 sockets, like BCC's bindsnoop.

Columns: [TIME(s)] [UID] [RC] PID COMM PROT ADDR PORT OPTS IF
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tracekit.probes._inet import IPPROTO_NAMES, addr, ip_version, ports
from tracekit.probes.bindsnoop import INVALID_UID, Bind, BindKey, BindSnoop, opts_str

from .common import HelpFormatter, add_common, add_container_filters, resolve_uid, run, run_summary

EPILOG = """\
examples:
  tracekit-bindsnoop             # trace all binding socket operations
  tracekit-bindsnoop -t          # include timestamps
  tracekit-bindsnoop -w          # wider columns (fit IPv6)
  tracekit-bindsnoop -p 181      # only trace PID 181
  tracekit-bindsnoop -P 80       # only trace port 80
  tracekit-bindsnoop -P 80,81    # only trace port 80 and 81
  tracekit-bindsnoop -U          # include UID
  tracekit-bindsnoop -u 1000     # only trace UID 1000
  tracekit-bindsnoop -E          # report bind errors (libbpf-tools' -x/--failed too)
  tracekit-bindsnoop --count     # count bind per src ip and port
  tracekit-bindsnoop -c /sys/fs/cgroup/app   # only tasks in this cgroup-v2 directory (or below)
  tracekit-bindsnoop --cgroupmap /sys/fs/bpf/cg  # only cgroups in this pinned BPF hash (BCC)

Options and columns are BCC's.  OPTS: F IP_FREEBIND, T IP_TRANSPARENT, N
IP_BIND_ADDRESS_NO_PORT, R SO_REUSEADDR, r SO_REUSEPORT ('.' when unset).  ADDR is the
address passed to bind(); PORT is the port bound (the kernel's pick for port 0), or the
one asked for when the bind failed.  Hooks: tracepoints syscalls:sys_{enter,exit}_bind
(no kprobes needed); binds through io_uring are not seen.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tracekit-bindsnoop", description="Trace IPv4 and IPv6 binds",
                                epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-w", "--wide", action="store_true", help="wide column output (fits IPv6 addresses)")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-P", "--port", help="comma-separated list of ports to trace")
    p.add_argument("-E", "--errors", "-x", "--failed", action="store_true", dest="errors",
                   help="include errors in the output")
    p.add_argument("-U", "--print-uid", action="store_true", help="include UID on output")
    p.add_argument("-u", "--uid", help="trace this UID (or user name) only")
    p.add_argument("--count", action="store_true", help="count binds per src ip and port")
    add_container_filters(p)
    add_common(p)
    args = p.parse_args(argv)
    args.uid = resolve_uid(p, args.uid)
    try:
        args.ports = ports(args.port) if args.port else frozenset()
    except ValueError as e:
        p.error(f"-P/--port: {e}")
    return args


def make_probe(args: argparse.Namespace, *, count_mode: bool = False) -> BindSnoop:
    wanted = args.ports

    class _Filtered(BindSnoop):
        def filter(self, ev: Bind) -> bool:
            return not wanted or ev.port in wanted

    return _Filtered(targ_tgid=args.pid or 0, targ_uid=args.uid if args.uid is not None else INVALID_UID,
                     ignore_errors=not args.errors, count_mode=count_mode, cgroup=args.cgroup,
                     cgroupmap=args.cgroupmap, mntnsmap=args.mntnsmap)


def proto_name(proto: int) -> str:
    return IPPROTO_NAMES.get(proto, "UNK")


def to_json(ev: Bind) -> dict[str, Any]:
    return {"ts": ev.ts, "pid": ev.pid, "tid": ev.tid, "uid": ev.uid, "comm": ev.comm, "ret": ev.ret,
            "proto": proto_name(ev.proto), "ip": ip_version(ev.af), "addr": addr(ev.af, ev.addr), "port": ev.port,
            "opts": opts_str(ev.opts), "if": ev.bound_dev_if}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = make_probe(args)
    banner = "Tracing binds ... Hit Ctrl-C to end"
    if args.count:
        # BCC counts in the kernel: a hash per (address, port), read once at the end
        counter = make_probe(args, count_mode=True)
        once = argparse.Namespace(**{**vars(args), "interval": None, "count": None, "timestamp": False})

        def collect(_: object) -> list[tuple[BindKey, int]]:
            return [(k, n) for k, n in counter.pop_counts() if not args.ports or k.port in args.ports]

        return run_summary(once, counter, collect, counts_text, counts_json, banner=banner)

    pid_w, addr_w = (10, 39) if args.wide else (8, 15)
    first_ts: list[int] = []

    def header() -> str:
        print(banner, file=sys.stderr)
        cols = ""
        if args.timestamp:
            cols += f"{'TIME(s)':<9} "
        if args.print_uid:
            cols += f"{'UID':>6} "
        if args.errors:
            cols += f"{'RC':>3} "
        return cols + f"{'PID':>{pid_w}} {'COMM':<12.12} {'PROT':<4} {'ADDR':<{addr_w}} {'PORT':<5} {'OPTS':>5} {'IF':>2}"

    def row(ev: Bind) -> str:
        cols = ""
        if args.timestamp:
            if not first_ts:
                first_ts.append(ev.ts)
            cols += f"{(ev.ts - first_ts[0]) / 1e9:<9.3f} "
        if args.print_uid:
            cols += f"{ev.uid:>6d} "
        if args.errors:
            cols += f"{ev.ret:>3d} "
        a = addr(ev.af, ev.addr)
        return cols + (f"{ev.pid:>{pid_w}d} {ev.comm:<12.12} {proto_name(ev.proto):<4.4} {a:<{addr_w}.{addr_w}} "
                       f"{ev.port:>5d} {opts_str(ev.opts):<5} {ev.bound_dev_if:>2d}")

    return run(args, probe, header, row, to_json)


def _keys(data: list[tuple[BindKey, int]]) -> list[tuple[str, int, int]]:
    # BCC: descending by count
    return sorted(((addr(k.af, k.addr), k.port, n) for k, n in data), key=lambda r: -r[2])


def counts_text(data: list[tuple[BindKey, int]]) -> str:
    lines = [f"{'LADDR':<32} {'LPORT':>20}     {'BINDS':<10}"]
    lines += [f"{a:<32} {port:>20d}     {n:<10d}" for a, port, n in _keys(data)]
    return "\n".join(lines)


def counts_json(data: list[tuple[BindKey, int]]) -> dict[str, Any]:
    return {"binds": [{"laddr": a, "lport": port, "binds": n} for a, port, n in _keys(data)]}


if __name__ == "__main__":
    raise SystemExit(main())
