"""tracekit-fsslower (libbpf-tools' fsslower) and its BCC-style aliases tracekit-ext4slower
and tracekit-xfsslower: file reads, writes, opens and fsyncs slower than a threshold.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tracekit.probes.fsslower import FILESYSTEMS, FS_FSYNC, FS_OPEN, FS_READ, FS_WRITE, LL_MAX, FileOp, FSSlower

from .common import HelpFormatter, add_common, duration, run

_EXAMPLES_BCC = (
    "examples:\n"
    "  tracekit-{fs}slower             # trace operations slower than 10 ms (default)\n"
    "  tracekit-{fs}slower 1           # trace operations slower than 1 ms\n"
    "  tracekit-{fs}slower -j 1        # ... 1 ms, parsable output (csv)\n"
    "  tracekit-{fs}slower 0           # trace all operations (warning: verbose)\n"
    "  tracekit-{fs}slower -p 185      # trace PID 185 only"
)


def _min_ms(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid threshold {text!r} (milliseconds)") from None
    if v < 0:
        raise argparse.ArgumentTypeError("the threshold must be >= 0 ms")
    return v


def parse_args(argv: list[str] | None, alias: str | None) -> argparse.Namespace:
    """``alias`` None: libbpf-tools' fsslower options; "ext4"/"xfs": BCC's ext4slower/xfsslower."""
    if alias is None:
        p = argparse.ArgumentParser(
            prog="tracekit-fsslower",
            description="Trace file system operations slower than a threshold",
            epilog="Options and columns are libbpf-tools' fsslower (T is R, W, O or F; an fsync's BYTES is\n"
            "its range, LL_MAX for the whole file). tracekit-ext4slower and tracekit-xfsslower are\n"
            "BCC's ext4slower/xfsslower (positional min_ms, -j CSV, T S for fsync).\n"
            "Hooks: fentry/fexit on the filesystem's functions where they attach, else\n"
            "kprobe/kretprobe.\n\n"
            "examples:\n"
            "  tracekit-fsslower -t ext4             # trace ext4 operations slower than 10 ms\n"
            "  tracekit-fsslower -t nfs -p 1216      # trace nfs operations with PID 1216 only\n"
            "  tracekit-fsslower -t xfs -c -d 1      # trace xfs operations for 1s with csv output",
            formatter_class=HelpFormatter,
        )
        p.add_argument("-t", "--type", choices=sorted(FILESYSTEMS), required=True, help="which filesystem to trace")
        p.add_argument("-p", "--pid", type=int, help="process ID to trace")
        p.add_argument("-m", "--min", type=_min_ms, default=10.0, help="min latency to trace, in ms (default 10; 0: all)")
        p.add_argument("-c", "--csv", action="store_true", help="output as csv")
        add_common(p)
        args = p.parse_args(argv)
        args.fs, args.bcc = args.type, False
        return args
    p = argparse.ArgumentParser(
        prog=f"tracekit-{alias}slower",
        description=f"Trace common {alias} file operations slower than a threshold",
        epilog=f"Options and columns are BCC's {alias}slower (T is R, W, O or S); tracekit-fsslower is\n"
        "libbpf-tools' variant. Hooks: fentry/fexit where they attach, else kprobe/kretprobe.\n\n"
        + _EXAMPLES_BCC.format(fs=alias),
        formatter_class=HelpFormatter,
    )
    p.add_argument("-j", "--csv", action="store_true", help="just print fields: comma-separated values")
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("min", nargs="?", type=_min_ms, default=10.0, help="minimum I/O duration to trace, in ms (default 10)")
    p.add_argument("-d", "--duration", type=duration, help="trace for this many seconds, then exit")
    p.add_argument("--json", action="store_true", help="print one JSON object per operation instead of columns")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")
    args = p.parse_args(argv)
    args.fs, args.bcc = alias, True
    return args


def main(argv: list[str] | None = None, alias: str | None = None) -> int:
    args = parse_args(argv, alias)
    probe = FSSlower.for_fs(args.fs)(targ_tgid=args.pid or 0, min_lat_ns=int(args.min * 1_000_000))
    types = "RWOS" if args.bcc else "RWOF"
    fs_name = "XFS" if args.bcc and args.fs == "xfs" else args.fs

    def header() -> str:
        if args.csv:
            return f"ENDTIME_{'us' if args.bcc else 'ns'},TASK,PID,TYPE,BYTES,OFFSET_b,LATENCY_us,FILE"
        text = f"Tracing {fs_name} operations" + (f" slower than {args.min:g} ms" if args.min else "")
        if not args.bcc:
            text += f" for {args.duration:g} secs." if args.duration else "... Hit Ctrl-C to end."
        cols = ("%-8s %-14s %-6s %1s %-7s %-8s %7s %s" if args.bcc else "%-8s %-16s %-7s %1s %-7s %-8s %7s %s")
        return text + "\n" + cols % ("TIME", "COMM", "PID", "T", "BYTES", "OFF_KB", "LAT(ms)", "FILENAME")

    def size_text(ev: FileOp) -> str:
        if args.bcc:
            return str(ev.size if ev.op in (FS_READ, FS_WRITE) else 0)
        return "LL_MAX" if ev.size == LL_MAX else str(ev.size)

    def row(ev: FileOp) -> str:
        t = types[ev.op] if 0 <= ev.op < 4 else "?"
        if args.csv:
            end = ev.end_ns // 1000 if args.bcc else ev.end_ns
            return f"{end},{ev.task},{ev.pid},{t},{size_text(ev)},{ev.offset},{ev.delta_us},{ev.file}"
        comm = f"{ev.task[:14]:<14} {ev.pid:<6}" if args.bcc else f"{ev.task:<16} {ev.pid:<7}"
        return (f"{time.strftime('%H:%M:%S'):<8} {comm} {t:1} {size_text(ev):<7} {ev.offset // 1024:<8d} "
                f"{ev.delta_us / 1000:7.2f} {ev.file}")

    def to_json(ev: FileOp) -> dict[str, Any]:
        return {"time": time.strftime("%H:%M:%S"), "end_ns": ev.end_ns, "comm": ev.task, "pid": ev.pid,
                "type": types[ev.op] if 0 <= ev.op < 4 else "?",
                "op": {FS_READ: "read", FS_WRITE: "write", FS_OPEN: "open", FS_FSYNC: "fsync"}.get(ev.op, "?"),
                "bytes": ev.size, "offset": ev.offset, "latency_us": ev.delta_us, "file": ev.file}

    return run(args, probe, header, row, to_json)


def fsslower(argv: list[str] | None = None) -> int:
    return main(argv)


def ext4slower(argv: list[str] | None = None) -> int:
    return main(argv, alias="ext4")


def xfsslower(argv: list[str] | None = None) -> int:
    return main(argv, alias="xfs")


if __name__ == "__main__":
    import os
    import sys

    name = os.path.basename(sys.argv[0])
    raise SystemExit(main(alias="ext4" if "ext4slower" in name else "xfs" if "xfsslower" in name else None))
