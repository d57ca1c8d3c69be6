"""tracekit-biosnoop: trace block device I/O with PID and latency, like BCC's biosnoop.

Columns: TIME(s) COMM PID DISK T SECTOR BYTES [P] [QUE(ms)] LAT(ms)
"""

from __future__ import annotations

import argparse
from typing import Any

from tracekit.probes.biolatency import disk_dev, disk_names, request_rwbs
from tracekit.probes.biosnoop import NO_QUEUE, BioSnoop, BlockIO

from .biolatency import add_tool_common
from .common import HelpFormatter, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-biosnoop",
        description="Trace block I/O",
        epilog="Options and columns follow BCC's biosnoop (-Q is the queued time from I/O start to\n"
        "issue, -d the disk); T is R or W as in BCC, or libbpf-tools' rwbs letters with -r.\n"
        "Hooks: block_io_start (tp_btf/raw_tp; else fentry/kprobe on __blk_account_io_start or\n"
        "blk_account_io_start; else block_getrq), block_rq_issue and block_rq_complete (tp_btf,\n"
        "else raw_tp).\n\n"
        "examples:\n"
        "  tracekit-biosnoop           # trace all block I/O\n"
        "  tracekit-biosnoop -Q        # include OS queued time\n"
        "  tracekit-biosnoop -d sdc    # trace sdc only\n"
        "  tracekit-biosnoop -P        # display block I/O pattern (S sequential, R random)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-Q", "--queue", action="store_true", help="include OS queued time")
    p.add_argument("-d", "--disk", help="trace this disk only")
    p.add_argument("-P", "--pattern", action="store_true", help="display block I/O pattern (sequential or random)")
    p.add_argument("-r", "--rwbs", action="store_true", help="T column as rwbs letters (libbpf-tools), e.g. WS")
    p.add_argument("positional_duration", nargs="?", type=float, metavar="duration",
                   help="trace for this many seconds (libbpf-tools' positional form)")
    add_tool_common(p)
    args = p.parse_args(argv)
    if args.positional_duration is not None:
        if args.positional_duration <= 0:
            p.error("duration must be positive")
        args.duration = args.duration or args.positional_duration
    args.dev = None
    if args.disk is not None:
        args.dev = disk_dev(args.disk)
        if args.dev is None:
            p.error(f"no disk {args.disk!r} in /proc/diskstats")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = BioSnoop(filter_dev=args.dev is not None, targ_dev=args.dev or 0)
    names = disk_names()
    first_ts: list[int] = []
    last_end: dict[int, int] = {}   # per disk: sector after the previous I/O (-P)

    def disk(dev: int) -> str:
        if dev not in names:
            names.update(disk_names())
        return names.get(dev, "<unknown>")

    def kind(ev: BlockIO) -> str:
        if args.rwbs:
            return request_rwbs(ev.cmd_flags)
        return "W" if ev.cmd_flags & 1 else "R"   # REQ_OP_WRITE is the op's low bit (as BCC)

    def pattern(ev: BlockIO) -> str:
        prev = last_end.get(ev.dev)
        last_end[ev.dev] = ev.sector + ev.len // 512
        if prev is None:
            return "?"
        return "S" if prev == ev.sector else "R"

    def header() -> str:
        h = f"{'TIME(s)':<11} {'COMM':<14} {'PID':<7} {'DISK':<9} {'T':<1} {'SECTOR':<10} {'BYTES':<7} "
        if args.pattern:
            h += f"{'P':<1} "
        if args.queue:
            h += f"{'QUE(ms)':>7} "
        return h + f"{'LAT(ms)':>7}"

    def row(ev: BlockIO) -> str:
        if not first_ts:
            first_ts.append(ev.ts)
        line = (f"{(ev.ts - first_ts[0]) / 1e9:<11.6f} {ev.comm or '?':<14.14} {ev.pid:<7d} {disk(ev.dev):<9} "
                f"{kind(ev):<1} {ev.sector:<10d} {ev.len:<7d} ")
        if args.pattern:
            line += f"{pattern(ev):<1} "
        if args.queue:
            q = ev.qdelta_ns / 1e6 if ev.qdelta_ns != NO_QUEUE else 0.0
            line += f"{q:7.2f} "
        return line + f"{ev.delta_ns / 1e6:7.2f}"

    def to_json(ev: BlockIO) -> dict[str, Any]:
        d: dict[str, Any] = {"ts": ev.ts, "comm": ev.comm or None, "pid": ev.pid, "disk": disk(ev.dev),
                             "dev": [ev.dev >> 20, ev.dev & 0xFFFFF], "rwbs": request_rwbs(ev.cmd_flags),
                             "sector": ev.sector, "bytes": ev.len, "lat_ns": ev.delta_ns,
                             "queue_ns": None if ev.qdelta_ns == NO_QUEUE else ev.qdelta_ns}
        if args.pattern:
            d["pattern"] = pattern(ev)
        return d

    return run(args, probe, header, row, to_json)


if __name__ == "__main__":
    raise SystemExit(main())
