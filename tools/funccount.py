"""tracekit-funccount: count function calls, like BCC's funccount.

Kernel functions (kprobe.multi or kprobes), user functions (uprobe.multi or uprobes) and
tracepoints; counts per interval, then ``Detaching...``.
"""

from __future__ import annotations

import argparse
from typing import Any

from tracekit.probes.funccount import FuncCount, FuncCountError, Target, resolve

from .common import HelpFormatter, duration, fail, run_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-funccount",
        description="Count functions, tracepoints and user functions",
        epilog="Options and output are BCC's funccount (libbpf-tools has none). Patterns:\n"
        "  func, p::func       kernel function      lib:func, p:lib:func, /path:func  user function\n"
        "  t:category:event    tracepoint           (u:lib:probe, USDT, is not supported yet)\n"
        "'*' is the wildcard; -r makes the pattern a regular expression.\n\n"
        "examples:\n"
        "  tracekit-funccount 'vfs_*'                  # count kernel fns starting with \"vfs\"\n"
        "  tracekit-funccount -r '^vfs.*'              # same, using regular expressions\n"
        "  tracekit-funccount -Ti 5 'vfs_*'            # output every 5 seconds, with timestamps\n"
        "  tracekit-funccount -d 10 'vfs_*'            # trace for 10 seconds only\n"
        "  tracekit-funccount -p 185 'vfs_*'           # count vfs calls for PID 185 only\n"
        "  tracekit-funccount t:sched:sched_fork       # count calls to the sched_fork tracepoint\n"
        "  tracekit-funccount -p 185 c:malloc          # count malloc calls of PID 185 (libc)\n"
        "  tracekit-funccount /usr/bin/python3:PyList_*  # user functions of a binary",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-p", "--pid", type=int, help="trace this PID only")
    p.add_argument("-i", "--interval", type=duration, help="summary interval, seconds")
    p.add_argument("-d", "--duration", type=duration, help="total duration of trace, seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-r", "--regexp", action="store_true", help="use regular expressions. Default is \"*\" wildcards only.")
    p.add_argument("-D", "--debug", action="store_true", help="print the matched probes before tracing")
    p.add_argument("-c", "--cpu", type=int, help="trace this CPU only")
    p.add_argument("--json", action="store_true", help="print one JSON object per interval")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the verifier log and debug output on errors")
    p.add_argument("pattern", help="search expression for events")
    args = p.parse_args(argv)
    args.count = None
    return args


def _lib_alias(pattern: str) -> str:
    """BCC's ``c:malloc``: a library named without 'lib' and '.so' (libc.so.6)."""
    parts = pattern.split(":")
    lib_i = 1 if len(parts) == 3 else 0 if len(parts) == 2 else -1
    if lib_i >= 0 and parts[lib_i] and "/" not in parts[lib_i] and ".so" not in parts[lib_i] \
            and parts[0] not in ("t", "u") and len(parts[lib_i]) <= 8:
        import ctypes.util

        try:
            found = ctypes.util.find_library(parts[lib_i])
        except OSError:  # ctypes' gcc probe can trip over its own temporary files
            found = None
        if found:
            parts[lib_i] = found
    return ":".join(parts)


def report_text(counts: dict[Target, int]) -> str:
    rows = sorted(((n, t.name) for t, n in counts.items() if n), key=lambda r: r[0])
    lines = [f"{'FUNC':<36} {'COUNT':>8}"] + [f"{name:<36} {n:8d}" for n, name in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pattern = _lib_alias(args.pattern)
    try:
        targets = resolve(pattern, regexp=args.regexp)
    except FuncCountError as e:
        return fail(str(e))
    except Exception as e:  # a bad regex, an unreadable binary: say it, no traceback
        return fail(f"{type(e).__name__}: {e}")
    if args.debug:
        for t in targets:
            print(f"{t.kind} {t.attach_target}")
    knobs: dict[str, Any] = {}
    if args.pid:
        knobs["targ_tgid"] = args.pid
    if args.cpu is not None:
        knobs["targ_cpu"] = args.cpu
    probe = FuncCount(targets, **knobs)

    def collect(pr: Any) -> dict[Target, int]:
        assert isinstance(pr, FuncCount)
        return pr.counts(reset=True)

    def to_json(counts: dict[Target, int]) -> dict[str, Any]:
        return {"counts": {t.name: n for t, n in sorted(counts.items(), key=lambda kv: kv[1]) if n}}

    banner = f'Tracing {len(targets)} functions for "{args.pattern}"... Hit Ctrl-C to end.'
    return run_summary(args, probe, collect, report_text, to_json, banner=banner, detaching=True)


if __name__ == "__main__":
    raise SystemExit(main())
