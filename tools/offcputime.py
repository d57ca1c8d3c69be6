"""tracekit-offcputime: summarize off-CPU time by stack trace, like BCC's offcputime.

Prints, at the end (Ctrl-C or after DURATION), each blocked stack with its total
microseconds off-CPU, or one folded line per stack with -f (for off-CPU flame graphs).
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any

from tracekit.probes.offcputime import U64_MAX, Blocked, OffCPUTime
from tracekit.symbols import Frame, fold, format_block, stack_id_missed

from .common import HelpFormatter, duration, run_summary
from .profile import _ids, _positive_int


def _usecs(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r} (whole microseconds)") from None
    if v < 0:
        raise argparse.ArgumentTypeError("time must be >= 0")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-offcputime",
        description="Summarize off-CPU time by stack trace",
        epilog="Options and output are BCC's offcputime (bare frame names, +0xoff with -s, ascending\n"
        "totals; folded output with -f), hooked like libbpf-tools at tp_btf/raw_tp sched_switch\n"
        "(no kprobe needed). The probe's own frames (bpf_prog_*, bpf_trace_run*) are left out.\n"
        "-d is BCC's --delimited; the duration is the positional argument (or --duration).\n\n"
        "examples:\n"
        "  tracekit-offcputime             # trace off-CPU stack time until Ctrl-C\n"
        "  tracekit-offcputime 5           # trace for 5 seconds only\n"
        "  tracekit-offcputime -f 5        # 5 seconds, and output in folded format\n"
        "  tracekit-offcputime -m 1000     # trace only events that last more than 1000 usec\n"
        "  tracekit-offcputime -M 10000    # trace only events that last less than 10000 usec\n"
        "  tracekit-offcputime -p 185      # only trace threads for PID 185\n"
        "  tracekit-offcputime -t 188      # only trace thread 188\n"
        "  tracekit-offcputime -u          # only trace user threads (no kernel)\n"
        "  tracekit-offcputime -k          # only trace kernel threads (no user)\n"
        "  tracekit-offcputime -U          # only show user space stacks (no kernel)\n"
        "  tracekit-offcputime -K          # only show kernel space stacks (no user)",
        formatter_class=HelpFormatter,
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=_ids, help="trace these PIDs only (comma separated)")
    who.add_argument("-t", "--tid", type=_ids, help="trace these TIDs only (comma separated)")
    who.add_argument("-u", "--user-threads-only", action="store_true", help="user threads only (no kernel threads)")
    who.add_argument("-k", "--kernel-threads-only", action="store_true", help="kernel threads only (no user threads)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("-U", "--user-stacks-only", action="store_true", help="show stacks from user space only")
    which.add_argument("-K", "--kernel-stacks-only", action="store_true", help="show stacks from kernel space only")
    p.add_argument("-d", "--delimited", action="store_true", help="insert delimiter between kernel/user stacks")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format")
    p.add_argument("-s", "--offset", action="store_true", help="show address offsets")
    p.add_argument("--stack-storage-size", type=_positive_int, default=16384, help="the number of unique stack traces")
    p.add_argument("-m", "--min-block-time", type=_usecs, default=1, help="the amount of time in microseconds over "
                   "which we store traces (default 1)")
    p.add_argument("-M", "--max-block-time", type=_usecs, default=None, help="the amount of time in microseconds "
                   "under which we store traces (default U64_MAX)")
    p.add_argument("--state", type=int, help="filter on this thread state bitmask (eg, 2 == TASK_UNINTERRUPTIBLE)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every stack at the end")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")
    p.add_argument("--duration", dest="duration_opt", type=duration, help="duration of trace, in seconds")
    p.add_argument("duration", nargs="?", type=duration, help="duration of trace, in seconds")
    args = p.parse_args(argv)
    if args.offset and args.folded:
        p.error("-s/--offset cannot be used with -f/--folded")
    if args.duration is None:
        args.duration = args.duration_opt
    args.interval = args.count = None
    args.timestamp = False
    return args


def banner(args: argparse.Namespace) -> str:
    if args.pid:
        who = "PIDs " + ",".join(map(str, args.pid))
    elif args.tid:
        who = "TIDs " + ",".join(map(str, args.tid))
    elif args.user_threads_only:
        who = "user threads"
    elif args.kernel_threads_only:
        who = "kernel threads"
    else:
        who = "all threads"
    stacks = "user" if args.user_stacks_only else "kernel" if args.kernel_stacks_only else "user + kernel"
    return (f"Tracing off-CPU time (us) of {who} by {stacks} stack"
            + (f" for {args.duration:g} secs." if args.duration else "... Hit Ctrl-C to end."))


def _own_frame(f: Frame) -> bool:
    """The probe's frames above the scheduler: the BPF program and the tracepoint glue."""
    name = f.name or ""
    return name.startswith(("bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_"))


def _trim(kernel: list[Frame]) -> list[Frame]:
    i = 0
    while i < len(kernel) and _own_frame(kernel[i]):
        i += 1
    return kernel[i:]


def render(args: argparse.Namespace, probe: OffCPUTime, totals: list[Blocked]) -> tuple[str, list[dict[str, Any]]]:
    stacks = probe.stacks
    want_user, want_kernel = not args.kernel_stacks_only, not args.user_stacks_only
    missing = collisions = 0
    blocks: list[str] = []
    folded: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for b in totals:
        user = stacks.user(b.user_stack_id, b.tgid) if want_user else None
        kernel = _trim(stacks.kernel(b.kernel_stack_id)) if want_kernel else None
        for sid, wanted in ((b.user_stack_id, want_user), (b.kernel_stack_id, want_kernel)):
            if wanted and stack_id_missed(sid):
                missing += 1
                collisions += sid == -errno.EEXIST
        if args.folded:
            line = fold(b.comm, 0, user=user, kernel=kernel, user_stack_id=b.user_stack_id,
                        kernel_stack_id=b.kernel_stack_id, delimiter=args.delimited).rsplit(" ", 1)[0]
            folded[line] = folded.get(line, 0) + b.usecs
        elif not args.json:
            blocks.append(format_block(b.comm, b.tid, b.usecs, kernel=kernel, user=user,
                                       kernel_stack_id=b.kernel_stack_id, user_stack_id=b.user_stack_id,
                                       delimiter=args.delimited, offset=args.offset, module=False))
        rows.append({"tid": b.tid, "pid": b.tgid, "comm": b.comm, "usecs": b.usecs,
                     "user": [f.bare for f in user] if user is not None else None,
                     "kernel": [f.bare for f in kernel] if kernel is not None else None})
    probe.clear_stacks()
    if missing:
        print(f"WARNING: {missing} stack traces could not be displayed."
              + (" Consider increasing --stack-storage-size." if collisions else ""), file=sys.stderr)
    if probe.dropped:
        print(f"WARNING: {probe.dropped} off-CPU intervals not counted (a map was full).", file=sys.stderr)
    if args.folded:
        return "".join(f"{line} {n}\n" for line, n in sorted(folded.items(), key=lambda kv: kv[1])), rows
    return "".join(blocks), rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    knobs: dict[str, Any] = {
        "user_threads_only": args.user_threads_only, "kernel_threads_only": args.kernel_threads_only,
        "user_stacks": not args.kernel_stacks_only, "kernel_stacks": not args.user_stacks_only,
        "min_block_ns": args.min_block_time * 1000,
        "max_block_ns": U64_MAX if args.max_block_time is None else min(args.max_block_time * 1000, U64_MAX),
    }
    if args.state is not None:
        knobs["state"] = args.state
    probe = OffCPUTime(pids=args.pid or (), tids=args.tid or (), stack_storage_size=args.stack_storage_size, **knobs)

    def collect(pr: Any) -> tuple[str, list[dict[str, Any]]]:
        return render(args, probe, probe.totals(reset=True))

    return run_summary(args, probe, collect, lambda d: d[0], lambda d: {"stacks": d[1]},
                       banner=None if args.folded else banner(args), blank_line=not args.folded)


if __name__ == "__main__":
    raise SystemExit(main())
