"""tracekit-biolatency: block device I/O latency as a histogram, like BCC's biolatency."""

from __future__ import annotations

import argparse
from typing import Any

from tracekit.probes.biolatency import BioLatency, disk_dev, disk_names, request_flags

from .common import HelpFormatter, add_interval, run_summary


def add_tool_common(p: argparse.ArgumentParser) -> None:
    """add_common() without -d, which BCC's block tools use for DISK (--duration stays)."""
    p.add_argument("--duration", type=_duration, help="trace for this many seconds, then report and exit")
    p.add_argument("-j", "--json", action="store_true", help="print one JSON object per interval (strict JSON)")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")


def _duration(text: str) -> float:
    from .common import duration

    return duration(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-biolatency",
        description="Summarize block device I/O latency as a histogram",
        epilog="Options and output follow BCC's biolatency (-d is the disk, as in BCC and libbpf-tools;\n"
        "--duration limits the run). -j/--json prints strict JSON, one object per interval, not\n"
        "BCC's Python dicts. Hooks: block_rq_issue/block_rq_complete (+ block_rq_insert with -Q)\n"
        "tracepoints, as tp_btf, else raw_tp.\n\n"
        "examples:\n"
        "  tracekit-biolatency                 # summarize block I/O latency as a histogram\n"
        "  tracekit-biolatency 1 10            # print 1 second summaries, 10 times\n"
        "  tracekit-biolatency -mT 1           # 1s summaries, milliseconds, and timestamps\n"
        "  tracekit-biolatency -Q              # include OS queued time in I/O time\n"
        "  tracekit-biolatency -D              # show each disk device separately\n"
        "  tracekit-biolatency -F              # show I/O flags separately\n"
        "  tracekit-biolatency -d sdc          # trace sdc only\n"
        "  tracekit-biolatency -e              # show extension summary (average)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-Q", "--queued", action="store_true", help="include OS queued time in I/O time")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-D", "--disks", action="store_true", help="print a histogram per disk device")
    p.add_argument("-F", "--flags", action="store_true", help="print a histogram per set of I/O flags")
    p.add_argument("-e", "--extension", action="store_true", help="summarize average/total value")
    p.add_argument("-d", "--disk", help="trace this disk only")
    add_interval(p)
    add_tool_common(p)
    args = p.parse_args(argv)
    if args.flags and args.disks:
        p.error("-D and -F are mutually exclusive")
    args.dev = None
    if args.disk is not None:
        args.dev = disk_dev(args.disk)
        if args.dev is None:
            p.error(f"no disk {args.disk!r} in /proc/diskstats")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = BioLatency(targ_per_disk=args.disks, targ_per_flag=args.flags, targ_queued=args.queued,
                       targ_ms=args.milliseconds, filter_dev=args.dev is not None, targ_dev=args.dev or 0)
    unit = "msecs" if args.milliseconds else "usecs"
    names: dict[int, str] = {}

    def section(h: Any) -> tuple[str, str] | None:
        if args.disks:
            dev = int(h.labels["dev"])
            if dev not in names:
                names.update(disk_names())  # a disk attached while we trace
            return "disk", names.get(dev, "?")
        if args.flags:
            return "flags", request_flags(int(h.labels["cmd_flags"]))
        return None

    def collect(pr: Any) -> Any:
        return pr.histograms()

    def text(hists: Any) -> str:
        out = []
        for h in hists:
            sec = section(h)
            if sec is not None:
                out.append(f"\n{sec[0]} = {sec[1]}\n")
            out.append(h.format(unit))
            if args.extension and h.total:
                total = h.sum or 0
                out.append(f"\navg = {total // h.total} {unit}, total: {total} {unit}, count: {h.total}\n")
        return "".join(out)

    def to_json(hists: Any) -> dict[str, Any]:
        out = []
        for h in hists:
            d = {"val_type": unit, "buckets": [{"low": b.low, "high": b.high, "count": b.count} for b in h.buckets()],
                 "count": h.total, "sum": h.sum}
            sec = section(h)
            if sec is not None:
                d[sec[0]] = sec[1]
            out.append(d)
        return {"histograms": out}

    names.update(disk_names())
    return run_summary(args, probe, collect, text, to_json,
                       banner="Tracing block device I/O... Hit Ctrl-C to end.")


if __name__ == "__main__":
    raise SystemExit(main())
