"""tracekit-execsnoop: trace execve() system calls, like BCC's and libbpf-tools' execsnoop.

Columns: [TIME] [TIME(s)] [UID] PCOMM PID PPID RET ARGS
"""

from __future__ import annotations

import argparse
import shlex

from tracekit.probes.execsnoop import INVALID_UID, TOTAL_MAX_ARGS, Exec, ExecSnoop

from .common import Clock, HelpFormatter, add_common, regex, resolve_uid, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-execsnoop",
        description="Trace exec() syscalls",
        epilog="examples:\n  tracekit-execsnoop          # trace all exec() syscalls\n"
        "  tracekit-execsnoop -x       # include failed exec()s\n"
        "  tracekit-execsnoop -T -U    # include time and UID columns\n"
        "  tracekit-execsnoop -u 1000  # only trace UID 1000\n"
        "  tracekit-execsnoop -n main  # only print command lines containing \"main\"\n"
        "  tracekit-execsnoop -l tpkg  # only print command where arguments contain \"tpkg\"",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-T", "--time", action="store_true", help="include a time column (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include a time-since-start column, in seconds")
    p.add_argument("-x", "--fails", action="store_true", help="include failed exec()s")
    p.add_argument("-u", "--uid", help="trace this UID (or user name) only")
    p.add_argument("-q", "--quote", action="store_true", help='add quotemarks (") around arguments')
    p.add_argument("-n", "--name", type=regex, help="only print commands matching this name (regex), any arg")
    p.add_argument("-l", "--line", type=regex, help="only print commands where arg contains this line (regex)")
    p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
    p.add_argument("-P", "--ppid", type=int, help="trace this parent PID only")
    p.add_argument("--max-args", type=int, default=20, help="maximum number of arguments parsed and displayed (1-60), default 20")
    add_common(p)
    args = p.parse_args(argv)
    if not 1 <= args.max_args <= TOTAL_MAX_ARGS:
        p.error(f"--max-args must be between 1 and {TOTAL_MAX_ARGS}")
    args.uid = resolve_uid(p, args.uid)
    return args


def make_probe(args: argparse.Namespace) -> ExecSnoop:
    name_re, line_re = args.name, args.line

    class _Filtered(ExecSnoop):
        def filter(self, ev: Exec) -> bool:
            if args.ppid is not None and ev.ppid != args.ppid:
                return False
            if name_re is not None and not name_re.search(ev.comm):
                return False
            if line_re is not None and not line_re.search(" ".join(ev.args)):
                return False
            return True

    return _Filtered(
        ignore_failed=not args.fails,
        targ_uid=args.uid if args.uid is not None else INVALID_UID,
        max_args=args.max_args,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = make_probe(args)
    clock = Clock()

    def header() -> str:
        cols = ""
        if args.time:
            cols += f"{'TIME':<8} "
        if args.timestamp:
            cols += f"{'TIME(s)':<8} "
        if args.print_uid:
            cols += f"{'UID':<6} "
        return cols + f"{'PCOMM':<16} {'PID':<6} {'PPID':<6} {'RET':>3} ARGS"

    def fmt_args(ev: Exec) -> str:
        parts = [a.replace("\n", "\\n") for a in ev.args]
        if args.quote:
            parts = ['"' + a.replace('"', '\\"') + '"' for a in parts]
        s = " ".join(parts)
        return s + (" ..." if ev.truncated else "")

    def row(ev: Exec) -> str:
        cols = ""
        if args.time:
            cols += f"{clock.hms():<8} "
        if args.timestamp:
            cols += f"{clock.since_start():<8.3f} "
        if args.print_uid:
            cols += f"{ev.uid:<6d} "
        return cols + f"{ev.comm:<16} {ev.pid:<6d} {ev.ppid:<6d} {ev.retval:>3d} {fmt_args(ev)}"

    def to_json(ev: Exec) -> dict:
        d = ev._asdict()
        d["cmdline"] = shlex.join(ev.args)
        return d

    return run(args, probe, header, row, to_json)


if __name__ == "__main__":
    raise SystemExit(main())
