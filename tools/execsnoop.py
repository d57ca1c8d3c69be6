"""tracekit-execsnoop: trace execve() system calls, like BCC's and libbpf-tools' execsnoop.

Columns: [TIME] [TIME(s)] [UID] PCOMM PID PPID RET ARGS
"""

from __future__ import annotations

import argparse
import re
import shlex
import struct
from dataclasses import asdict, dataclass
from typing import Any

import tracekit

from .common import Clock, add_common, resolve_uid, run

INVALID_UID = 0xFFFFFFFF
TOTAL_MAX_ARGS = 60


@dataclass(slots=True)
class Exec:
    """One execve(): the process, its parent, the result and the argument vector."""

    pid: int
    ppid: int
    uid: int
    retval: int
    comm: str
    args: list[str]
    truncated: bool


class ExecSnoop(tracekit.Probe):
    """The bundled execsnoop probe: tracepoints syscalls:sys_{enter,exit}_execve."""

    object = "execsnoop"
    event = "event"

    ignore_failed: bool = True
    targ_uid: int = INVALID_UID
    max_args: int = 20

    _fields: list[tuple[str, int, struct.Struct]] | None = None
    _args_off: int = 0

    def decode(self, raw: bytes) -> Exec:
        # The program emits only the used prefix of args[]: read the fixed fields at their
        # BTF offsets, then split the NUL-separated argv by args_size.
        if self._fields is None:
            self._fields, self._args_off = _layout(self.obj.btf)  # type: ignore[union-attr]
        v = {name: st.unpack_from(raw, off)[0] for name, off, st in self._fields}
        blob = raw[self._args_off : self._args_off + v["args_size"]]
        parts = blob.split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        return Exec(
            v["pid"], v["ppid"], v["uid"], v["retval"],
            v["comm"].split(b"\0", 1)[0].decode("utf-8", "replace"),
            [a.decode("utf-8", "replace") for a in parts],
            truncated=v["args_count"] > self.values["max_args"],
        )


_FIELD_FORMATS = {"pid": "<i", "ppid": "<i", "uid": "<I", "retval": "<i", "args_count": "<i",
                  "args_size": "<I", "comm": "16s"}


def _layout(btf: Any) -> tuple[list[tuple[str, int, struct.Struct]], int]:
    """Offsets of struct event's fields, from the object's BTF (not hard-coded)."""
    t = btf.type(btf.find("event")[0])
    off = {m.name: m.bit_offset // 8 for m in t.members}
    return [(n, off[n], struct.Struct(f)) for n, f in _FIELD_FORMATS.items()], off["args"]


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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-T", "--time", action="store_true", help="include a time column (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include a time-since-start column, in seconds")
    p.add_argument("-x", "--fails", action="store_true", help="include failed exec()s")
    p.add_argument("-u", "--uid", help="trace this UID (or user name) only")
    p.add_argument("-q", "--quote", action="store_true", help='add quotemarks (") around arguments')
    p.add_argument("-n", "--name", help="only print commands matching this name (regex), any arg")
    p.add_argument("-l", "--line", help="only print commands where arg contains this line (regex)")
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
    name_re = re.compile(args.name) if args.name else None
    line_re = re.compile(args.line) if args.line else None

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
        d = asdict(ev)
        d["cmdline"] = shlex.join(ev.args)
        return d

    return run(args, probe, header, row, to_json)


if __name__ == "__main__":
    raise SystemExit(main())
