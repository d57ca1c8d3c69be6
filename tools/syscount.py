"""tracekit-syscount: count syscalls (and their latency), like BCC's syscount.

Options and output are BCC's (-c is BCC's --ppid, not libbpf-tools' cgroup), plus --json.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
from typing import Any

from tracekit.probes.syscount import Count, SysCount, syscall_name, syscall_names, syscall_number

from .common import HelpFormatter, add_common, fail, run_summary


def _errno(text: str) -> int:
    """-e values: a number or a name (ENOENT)."""
    if text.isdigit():
        return int(text)
    code = getattr(errno, text.upper(), None)
    if not isinstance(code, int):
        raise argparse.ArgumentTypeError(f"unknown errno {text!r} (a number, or a name like ENOENT)")
    return code


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("interval must be positive")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-syscount",
        description="Summarize syscall counts and latencies.",
        epilog="Options and columns follow BCC's syscount (-c is --ppid as in BCC; libbpf-tools uses\n"
        "-c for a cgroup). Hooks: tracepoints raw_syscalls:sys_exit (and sys_enter with -L).\n\n"
        "examples:\n"
        "  tracekit-syscount                 # count all syscalls until Ctrl-C\n"
        "  tracekit-syscount -p 181          # only PID 181\n"
        "  tracekit-syscount -x              # only failed syscalls\n"
        "  tracekit-syscount -e ENOENT       # only syscalls failing with ENOENT\n"
        "  tracekit-syscount -L -m           # with total latency, in milliseconds\n"
        "  tracekit-syscount -P -i 1         # per process, every second\n"
        "  tracekit-syscount --syscall read  # only read()\n"
        "  tracekit-syscount --exec 'ls /'   # run ls and count its syscalls",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-p", "--pid", type=int, help="trace only this pid")
    p.add_argument("-t", "--tid", type=int, help="trace only this tid")
    p.add_argument("-c", "--ppid", type=int, help="trace only child processes of this pid")
    p.add_argument("-i", "--interval", type=_interval, help="print summary at this interval (seconds)")
    p.add_argument("-T", "--top", type=int, default=10, help="print only the top syscalls by count or latency")
    p.add_argument("-x", "--failures", action="store_true", help="trace only failed syscalls (return < 0)")
    p.add_argument("-e", "--errno", type=_errno, help="trace only syscalls that return this error (numeric or EPERM, etc.)")
    p.add_argument("-L", "--latency", action="store_true", help="collect syscall latency")
    p.add_argument("-m", "--milliseconds", action="store_true", help="display latency in milliseconds (default: microseconds)")
    p.add_argument("-P", "--process", action="store_true", help="count by process and not by syscall")
    p.add_argument("-l", "--list", action="store_true", help="print list of recognized syscalls and exit")
    p.add_argument("--syscall", help="trace this syscall only (use --list for valid names)")
    p.add_argument("--exec", dest="exec_cmd", help="run this command (a shell-like string) and trace only it")
    add_common(p)
    args = p.parse_args(argv)
    args.count = None   # no [count]: syscount reports until stopped
    if args.pid is not None and args.exec_cmd:
        p.error("-p and --exec are mutually exclusive")
    if args.top < 1:
        p.error("-T/--top must be at least 1")
    args.syscall_nr = -1
    if args.syscall is not None:
        nr = int(args.syscall) if args.syscall.isdigit() else syscall_number(args.syscall)
        if nr is None:
            p.error(f"unknown syscall {args.syscall!r} (see --list)")
        args.syscall_nr = nr
    return args


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return "[unknown]"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name in sorted(syscall_names().values()):
            print(name)
        return 0

    child = 0
    go_w = -1
    if args.exec_cmd:
        import shlex

        cmd = shlex.split(args.exec_cmd)
        if not cmd:
            return fail("--exec needs a command")
        # The child waits on a pipe until the probes are attached (as BCC's --exec), so
        # none of its syscalls are missed; it is traced by pid, and its end ends the tool.
        # A bare fork: subprocess.Popen would itself wait for the exec to happen.
        go_r, go_w = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(go_w)
                if not os.read(go_r, 1):
                    os._exit(1)   # the tool gave up before attaching
                os.close(go_r)
                os.execvp(cmd[0], cmd)
            except OSError as e:
                print(f"tracekit-syscount: cannot run {cmd[0]!r}: {e.strerror}", file=sys.stderr, flush=True)
            os._exit(127)
        os.close(go_r)
        args.pid = child
    exited: list[int] = []

    def child_done() -> bool:
        if not exited:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                exited.append(status)
        return bool(exited)

    probe = SysCount(
        filter_pid=args.pid or 0, filter_tid=args.tid or 0, filter_ppid=args.ppid or 0,
        filter_failed=args.failures, filter_errno=args.errno or 0, filter_syscall=args.syscall_nr,
        measure_latency=args.latency, count_by_process=args.process,
    )
    unit, div = ("ms", 1e6) if args.milliseconds else ("us", 1e3)

    def collect(pr: Any) -> list[Count]:
        rows: list[Count] = pr.pop()
        # latency mode ranks by time spent, counts mode by number of calls (as BCC)
        rows.sort(key=(lambda c: -c.total_ns) if args.latency else (lambda c: -c.count))
        return rows[: args.top]

    def label(c: Count) -> str:
        if args.process:
            return f"{c.key:<6d} {c.comm or comm_of(c.key):<15}"
        return syscall_name(c.key)

    def text(rows: list[Count]) -> str:
        first = "PID    COMM" if args.process else "SYSCALL"
        out = [f"[{time.strftime('%H:%M:%S')}]"]
        if args.latency:
            out.append(f"{first:<22} {'COUNT':>8} {f'TIME ({unit})':>16}")
            fmt = "{:16.6f}" if args.milliseconds else "{:16.3f}"
            out += [f"{label(c):<22} {c.count:8d} " + fmt.format(c.total_ns / div) for c in rows]
        else:
            out.append(f"{first:<22} {'COUNT':>8}")
            out += [f"{label(c):<22} {c.count:8d}" for c in rows]
        return "\n".join(out) + "\n\n"

    def to_json(rows: list[Count]) -> dict[str, Any]:
        items = []
        for c in rows:
            d: dict[str, Any] = ({"pid": c.key, "comm": c.comm or comm_of(c.key)} if args.process
                                 else {"syscall": syscall_name(c.key), "nr": c.key})
            d["count"] = c.count
            if args.latency:
                d["total_ns"] = c.total_ns
            items.append(d)
        return {"rows": items}

    if args.syscall is not None:
        banner = f"Tracing syscall '{syscall_name(args.syscall_nr)}'... Ctrl+C to quit."
    else:
        banner = f"Tracing {'failed ' if args.failures else ''}syscalls, printing top {args.top}... Ctrl+C to quit."

    def release_child() -> None:
        nonlocal go_w
        if go_w >= 0:
            os.write(go_w, b"g")
            os.close(go_w)
            go_w = -1

    try:
        return run_summary(args, probe, collect, text, to_json, banner=banner, blank_line=False,
                           timestamp_line=False, detaching=True, on_ready=release_child,
                           done=child_done if child else None)
    finally:
        if child:
            if go_w >= 0:
                os.close(go_w)   # never attached: the child exits without running the command
            if not child_done():
                os.kill(child, signal.SIGTERM)
                os.waitpid(child, 0)


if __name__ == "__main__":
    raise SystemExit(main())
