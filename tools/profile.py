"""tracekit-profile: sample stack traces at a timed interval, like BCC's profile.

Prints, at the end (Ctrl-C or after DURATION), each sampled stack with its count, or one
folded line per stack with -f (for flame graphs).
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any

from tracekit.probes.profile import Profile, Sample
from tracekit.symbols import fold, format_block, stack_id_missed

from .common import HelpFormatter, duration, run_summary


def _ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid id list {text!r} (e.g. 185,175)") from None
    if not ids or any(i <= 0 for i in ids):
        raise argparse.ArgumentTypeError("ids must be positive")
    return ids


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-profile",
        description="Profile CPU stack traces at a timed interval",
        epilog="Options and output are BCC's profile (frames as name+0xoff [module], hottest stack last),\n"
        "sampling the software cpu-clock as libbpf-tools does (it exists in VMs without a PMU).\n"
        "-d is BCC's --delimited; the duration is the positional argument (or --duration).\n"
        "Identical folded lines (-f) are merged.\n\n"
        "examples:\n"
        "  tracekit-profile             # profile stack traces at 49 Hertz until Ctrl-C\n"
        "  tracekit-profile -F 99       # profile stack traces at 99 Hertz\n"
        "  tracekit-profile -c 1000000  # profile stack traces every 1 in a million events\n"
        "  tracekit-profile 5           # profile at 49 Hertz for 5 seconds only\n"
        "  tracekit-profile -f 5        # output in folded format for flame graphs\n"
        "  tracekit-profile -p 185      # only profile process with PID 185\n"
        "  tracekit-profile -L 185      # only profile thread with TID 185\n"
        "  tracekit-profile -U          # only show user space stacks (no kernel)\n"
        "  tracekit-profile -K          # only show kernel space stacks (no user)",
        formatter_class=HelpFormatter,
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=_ids, help="profile process with one or more comma separated PIDs only")
    who.add_argument("-L", "--tid", type=_ids, help="profile thread with one or more comma separated TIDs only")
    which = p.add_mutually_exclusive_group()
    which.add_argument("-U", "--user-stacks-only", action="store_true", help="show stacks from user space only")
    which.add_argument("-K", "--kernel-stacks-only", action="store_true", help="show stacks from kernel space only")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("-F", "--frequency", type=_positive_int, help="sample frequency, Hertz")
    rate.add_argument("-c", "--count", dest="sample_period", type=_positive_int,
                      help="sample period, number of events (cpu-clock nanoseconds)")
    p.add_argument("-d", "--delimited", action="store_true", help="insert delimiter between kernel/user stacks")
    p.add_argument("-a", "--annotations", action="store_true", help="add _[k] annotations to kernel frames")
    p.add_argument("-I", "--include-idle", action="store_true", help="include CPU idle stacks")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format, one line per stack")
    p.add_argument("--hash-storage-size", type=_positive_int, default=40960, help="the number of hash keys")
    p.add_argument("--stack-storage-size", type=_positive_int, default=16384, help="the number of unique stack traces")
    p.add_argument("-C", "--cpu", type=int, help="cpu number to run profile on")
    p.add_argument("-A", "--address", action="store_true", help="show raw addresses")
    p.add_argument("--json", action="store_true", help="print one JSON object with every stack at the end")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")
    p.add_argument("--duration", dest="duration_opt", type=duration, help="duration of trace, in seconds")
    p.add_argument("duration", nargs="?", type=duration, help="duration of trace, in seconds")
    args = p.parse_args(argv)
    if args.annotations and not args.folded:
        p.error("-a/--annotations needs -f/--folded")
    if args.duration is None:
        args.duration = args.duration_opt
    args.interval = None
    args.count = None
    args.timestamp = False
    return args


def banner(args: argparse.Namespace) -> str:
    who = f"PID {args.pid}" if args.pid else f"TID {args.tid}" if args.tid else "all threads"
    stacks = "user" if args.user_stacks_only else "kernel" if args.kernel_stacks_only else "user + kernel"
    rate = f"every {args.sample_period} events" if args.sample_period else f"{args.frequency or 49} Hertz"
    text = f"Sampling at {rate} of {who} by {stacks} stack"
    if args.cpu is not None:
        text += f" on CPU#{args.cpu}"
    return text + (f" for {args.duration:g} secs." if args.duration else "... Hit Ctrl-C to end.")


def render(args: argparse.Namespace, probe: Profile, samples: list[Sample]) -> tuple[str, list[dict[str, Any]]]:
    """The report text and its JSON rows; warnings go to stderr."""
    stacks = probe.stacks
    want_user, want_kernel = not args.kernel_stacks_only, not args.user_stacks_only
    missing = collisions = 0
    blocks: list[str] = []
    folded: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for s in samples:
        user = stacks.user(s.user_stack_id, s.pid) if want_user else None
        kernel = stacks.kernel(s.kernel_stack_id) if want_kernel else None
        for sid, wanted in ((s.user_stack_id, want_user), (s.kernel_stack_id, want_kernel)):
            if wanted and stack_id_missed(sid):
                missing += 1
                collisions += sid == -errno.EEXIST
        if args.folded:
            line = fold(s.comm, 0, user=user, kernel=kernel, user_stack_id=s.user_stack_id,
                        kernel_stack_id=s.kernel_stack_id, delimiter=args.delimited,
                        annotate_kernel=args.annotations).rsplit(" ", 1)[0]
            folded[line] = folded.get(line, 0) + s.count
        elif not args.json:
            if args.address:
                user = [f"{f.addr:#x} {f.format()}" for f in user] if user is not None else None
                kernel = [f"{f.addr:#x} {f.format()}" for f in kernel] if kernel is not None else None
            blocks.append(format_block(s.comm, s.pid, s.count, kernel=kernel, user=user,
                                       kernel_stack_id=s.kernel_stack_id, user_stack_id=s.user_stack_id,
                                       delimiter=args.delimited))
        rows.append({"pid": s.pid, "comm": s.comm, "count": s.count,
                     "user": [f.format() for f in user] if user is not None else None,
                     "kernel": [f.format() for f in kernel] if kernel is not None else None,
                     "user_stack_id": s.user_stack_id, "kernel_stack_id": s.kernel_stack_id})
    probe.clear_stacks()
    if missing:
        print(f"WARNING: {missing} stack traces could not be displayed."
              + (" Consider increasing --stack-storage-size." if collisions else ""), file=sys.stderr)
    if probe.counts_full:
        print("WARNING: hash table full. Consider increasing --hash-storage-size.", file=sys.stderr)
    if args.folded:
        text = "".join(f"{line} {n}\n" for line, n in sorted(folded.items(), key=lambda kv: kv[1]))
    else:
        text = "".join(blocks)
    return text, rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = Profile(pids=args.pid or (), tids=args.tid or (), frequency=args.frequency or 49,
                    period=args.sample_period, cpus=[args.cpu] if args.cpu is not None else None,
                    stack_storage_size=args.stack_storage_size, hash_storage_size=args.hash_storage_size,
                    include_idle=args.include_idle, user_stacks=not args.kernel_stacks_only,
                    kernel_stacks=not args.user_stacks_only)

    def collect(pr: Any) -> tuple[str, list[dict[str, Any]]]:
        return render(args, probe, probe.samples(reset=True))

    return run_summary(args, probe, collect, lambda d: d[0], lambda d: {"stacks": d[1]},
                       banner=None if args.folded else banner(args), blank_line=not args.folded)


if __name__ == "__main__":
    raise SystemExit(main())
