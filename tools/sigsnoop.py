"""tracekit-sigsnoop: trace signals, like libbpf-tools' sigsnoop; tracekit-killsnoop is
the kill(2)-family variant with BCC killsnoop's options and columns.

sigsnoop columns:  TIME PID COMM SIG TPID TCOMM RESULT
killsnoop columns: TIME PID COMM SIG TPID RESULT
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tracekit.probes.sigsnoop import SRC_GENERATE, Signal, SigSnoop, sig_mask

from .common import Clock, HelpFormatter, add_common, run

#: Linux signal names 1..31 (x86, arm64: the generic numbering)
SIGNAL_NAMES = ("N/A", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
                "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
                "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
                "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS")

SIGSNOOP_EPILOG = """\
examples:
  tracekit-sigsnoop             # trace signals system-wide
  tracekit-sigsnoop -k          # trace signals issued by kill syscall only
  tracekit-sigsnoop -x          # trace failed signals only
  tracekit-sigsnoop -p 1216     # only trace PID 1216
  tracekit-sigsnoop -s 1,9,15   # trace signals 1, 9 and 15
  tracekit-sigsnoop -n          # print signal names

Options and columns are libbpf-tools' (BCC has only killsnoop; tracekit-killsnoop is
that one).  Hooks: tracepoint signal:signal_generate (every generated signal, including
the kernel's own SIGCHLD/SIGSEGV; RESULT is its errno field), or with -k the tracepoints
syscalls:sys_{enter,exit}_{kill,tkill,tgkill} (RESULT is the syscall's return; signal 0
shows too).  With -k, TCOMM comes from signal_generate during the call, and is N/A when
no signal was generated (signal 0, a failed kill).
"""

KILLSNOOP_EPILOG = """\
examples:
  tracekit-killsnoop            # trace all kill() signals
  tracekit-killsnoop -x         # only show failed kills
  tracekit-killsnoop -p 181     # only trace PID 181 (the sender)
  tracekit-killsnoop -T 189     # only trace target PID 189
  tracekit-killsnoop -s 9       # only trace signal 9

Options and columns are BCC's killsnoop.  Unlike BCC's (kill(2) only), tkill(2) and
tgkill(2) are traced too, as libbpf-tools' sigsnoop -k does.  Hooks: tracepoints
syscalls:sys_{enter,exit}_{kill,tkill,tgkill} (no kprobes needed); RESULT is 0 or -errno.
"""


def signals(text: str) -> list[int]:
    """``-s`` values: comma-separated numbers or names (``9``, ``TERM``, ``SIGKILL,1``)."""
    out = []
    for part in text.split(","):
        part = part.strip().upper()
        if not part:
            continue
        if part.isdigit():
            n = int(part)
        else:
            name = part if part.startswith("SIG") else "SIG" + part
            if name not in SIGNAL_NAMES:
                raise argparse.ArgumentTypeError(f"unknown signal {part!r} (e.g. 9, KILL, SIGTERM)")
            n = SIGNAL_NAMES.index(name)
        if not 1 <= n <= 63:
            raise argparse.ArgumentTypeError(f"signal {n} out of range 1..63")
        out.append(n)
    return out


def sig_name(sig: int) -> str:
    if 0 <= sig < len(SIGNAL_NAMES):
        return SIGNAL_NAMES[sig]
    return f"SIGNAL-{sig}"


def parse_args(argv: list[str] | None, killsnoop: bool) -> argparse.Namespace:
    if killsnoop:
        p = argparse.ArgumentParser(prog="tracekit-killsnoop", description="Trace signals issued by the kill() syscall",
                                    epilog=KILLSNOOP_EPILOG, formatter_class=HelpFormatter)
        p.add_argument("-x", "--failed", action="store_true", help="only show failed kill syscalls")
        p.add_argument("-p", "--pid", type=int, help="trace this PID only which is the sender of signal")
        p.add_argument("-T", "--tpid", type=int, help="trace this target PID only which is the receiver of signal")
        p.add_argument("-s", "--signal", type=signals, help="trace this signal only (list: 9,15)")
    else:
        p = argparse.ArgumentParser(prog="tracekit-sigsnoop", description="Trace standard and real-time signals",
                                    epilog=SIGSNOOP_EPILOG, formatter_class=HelpFormatter)
        p.add_argument("-x", "--failed", action="store_true", help="trace failed signals only")
        p.add_argument("-k", "--kill", action="store_true", help="trace signals issued by kill syscall only")
        p.add_argument("-p", "--pid", type=int, help="process ID to trace (the sender)")
        p.add_argument("-T", "--tpid", type=int, help="target process ID to trace (tracekit extra)")
        p.add_argument("-s", "--signal", type=signals, help="signal(s) to trace (list: 1,9,15)")
        p.add_argument("-n", "--name", action="store_true", help="output signal name instead of signal number")
    add_common(p)
    args = p.parse_args(argv)
    if killsnoop:
        args.kill, args.name = True, False
    return args


def pid_width() -> int:
    """BCC killsnoop: as many columns as pid_max has digits, plus one."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return len(f.read().strip()) + 1
    except OSError:
        return 6


def main(argv: list[str] | None = None, *, killsnoop: bool = False) -> int:
    if not killsnoop and os.path.basename(sys.argv[0]).endswith("killsnoop") and argv is None:
        killsnoop = True   # run through a killsnoop link, as libbpf-tools' sigsnoop
    args = parse_args(argv, killsnoop)
    probe = SigSnoop(filtered_pid=args.pid or 0, target_pid=args.tpid or 0,
                     sig_mask=sig_mask(args.signal or ()), failed_only=args.failed, kill_mode=args.kill)
    clock = Clock()
    pw = pid_width()

    def tcomm(ev: Signal) -> str:
        return ev.tcomm if ev.has_tcomm else "N/A"

    def header() -> str:
        if killsnoop:
            return f"{'TIME':<9} {'PID':<{pw}} {'COMM':<16} {'SIG':<4} {'TPID':<{pw}} RESULT"
        return f"{'TIME':<8} {'PID':<7} {'COMM':<16} {'SIG':<12} {'TPID':<7} {'TCOMM':<16} {'RESULT':<6}"

    def row(ev: Signal) -> str:
        if killsnoop:
            return f"{clock.hms():<9} {ev.pid:<{pw}d} {ev.comm:<16} {ev.sig:<4d} {ev.tpid:<{pw}d} {ev.ret}"
        sig = sig_name(ev.sig) if args.name else str(ev.sig)
        return f"{clock.hms():<8} {ev.pid:<7d} {ev.comm:<16} {sig:<12} {ev.tpid:<7d} {tcomm(ev):<16} {ev.ret:<6d}"

    def to_json(ev: Signal) -> dict[str, Any]:
        obj: dict[str, Any] = {"ts": ev.ts, "pid": ev.pid, "tid": ev.tid, "comm": ev.comm, "sig": ev.sig,
                               "signame": sig_name(ev.sig), "tpid": ev.tpid, "tcomm": ev.tcomm if ev.has_tcomm else None,
                               "ret": ev.ret}
        if ev.source == SRC_GENERATE:
            obj["result"] = ev.result
        else:
            obj["syscall"] = ("kill", "tkill", "tgkill")[ev.source - 1]
        return obj

    return run(args, probe, header, row, to_json)


if __name__ == "__main__":
    raise SystemExit(main())
