"""tracekit-opensnoop's rows, byte for byte: BCC's columns for every option set, from
records decoded by the probe's (eager) event type."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest

from tracekit.btf.reader import BTF
from tracekit.events.records import EventType
from tracekit_tools.common import Clock
from tracekit_tools.opensnoop import make_row, parse_args

OPENSNOOP_O = Path(__file__).resolve().parents[2] / "tracekit" / "probes" / "opensnoop.bpf.o"


def reference(ev: object, args: object, hms: str) -> str:
    """The columns as BCC's opensnoop prints them (the format specs of its printf)."""
    ret = ev.ret  # type: ignore[attr-defined]
    fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
    cols = ""
    if args.timestamp:  # type: ignore[attr-defined]
        cols += f"{hms:<8} "
    if args.print_uid:  # type: ignore[attr-defined]
        cols += f"{ev.uid:<7d} "  # type: ignore[attr-defined]
    who = ev.tid if args.tid is not None else ev.pid  # type: ignore[attr-defined]
    cols += f"{who:<6d} {ev.comm:<16} {fd:>3d} {err:>3d} "  # type: ignore[attr-defined]
    if args.extended_fields:  # type: ignore[attr-defined]
        cols += f"{ev.flags & 0xFFFFFFFF:08o} "  # type: ignore[attr-defined]
    return cols + ev.fname  # type: ignore[attr-defined]


RECORDS = [
    (1, 4242, 4243, 1000, 3, 0o2101101, 0o644, b"storm\0junk", b"/dev/null"),
    (2, 1, 1, 0, -2, 0, 0, b"a-very-long-comm", b"/nonexistent/\xc3\xa9t\xc3\xa9"),
    (3, 1234567, 7654321, 4294967294, -13, -1, 0, b"\0", b""),
    (4, 7, 8, 65534, 1023, 0o100, 0o600, b"x\xff", b"with space\nand newline"),
]


@pytest.mark.parametrize("opts", [list(c) for n in range(5) for c in itertools.combinations(
    ["-T", "-U", "-e", "-t 8"], n)])
def test_rows_are_bccs_columns(opts: list[str]) -> None:
    et = EventType.from_btf(BTF.from_file(str(OPENSNOOP_O)), "event")
    args = parse_args([w for o in opts for w in o.split()])
    clock = Clock()
    row = make_row(args, clock)
    for rec in RECORDS:
        raw = struct.pack("<QiiIiiI16s255sx", *rec)
        for ev in (et.decode(raw), et.eager().decode(raw)):
            hms = clock.hms()
            got = row(ev)
            if got != reference(ev, args, hms):  # the clock may have ticked between the two
                assert got == reference(ev, args, clock.hms())
