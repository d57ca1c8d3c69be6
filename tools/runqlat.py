"""tracekit-runqlat: run queue (scheduler) latency as a histogram, like BCC's runqlat."""

from __future__ import annotations

import argparse
from typing import Any

from tracekit.probes.runqlat import RunQLat

from .common import HelpFormatter, add_common, add_interval, run_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-runqlat",
        description="Summarize run queue (scheduler) latency as a histogram",
        epilog="Options and output follow BCC's runqlat (sections `pid = N`, `tid = N`, `pidns = N`);\n"
        "--json prints one object per interval. Hooks: sched_wakeup, sched_wakeup_new and\n"
        "sched_switch tracepoints, as tp_btf, else raw_tp.\n\n"
        "examples:\n"
        "  tracekit-runqlat            # summarize run queue latency as a histogram\n"
        "  tracekit-runqlat 1 10       # print 1 second summaries, 10 times\n"
        "  tracekit-runqlat -mT 1      # 1s summaries, milliseconds, and timestamps\n"
        "  tracekit-runqlat -P         # show each PID separately\n"
        "  tracekit-runqlat -p 185     # trace PID 185 only",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-P", "--pids", action="store_true", help="print a histogram per process ID")
    p.add_argument("-L", "--tids", action="store_true", help="print a histogram per thread ID")
    p.add_argument("--pidnss", action="store_true", help="print a histogram per PID namespace")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    add_interval(p)
    add_common(p)
    args = p.parse_args(argv)
    if sum((args.pids, args.tids, args.pidnss)) > 1:
        p.error("-P, -L and --pidnss are mutually exclusive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = RunQLat(targ_per_process=args.pids, targ_per_thread=args.tids, targ_per_pidns=args.pidnss,
                    targ_ms=args.milliseconds, targ_tgid=args.pid or 0)
    unit = "msecs" if args.milliseconds else "usecs"
    section = "pid" if args.pids else "tid" if args.tids else "pidns" if args.pidnss else None

    def collect(pr: Any) -> Any:
        return pr.histograms()

    def text(hists: Any) -> str:
        out = []
        for h in hists:
            if section is not None:
                out.append(f"\n{section} = {h.labels['key']}\n")
            out.append(h.format(unit))
        return "".join(out)

    def to_json(hists: Any) -> dict[str, Any]:
        out = []
        for h in hists:
            d: dict[str, Any] = {"val_type": unit, "count": h.total, "sum": h.sum,
                                 "buckets": [{"low": b.low, "high": b.high, "count": b.count} for b in h.buckets()]}
            if section is not None:
                d[section] = h.labels["key"]
            out.append(d)
        return {"histograms": out}

    return run_summary(args, probe, collect, text, to_json,
                       banner="Tracing run queue latency... Hit Ctrl-C to end.")


if __name__ == "__main__":
    raise SystemExit(main())
