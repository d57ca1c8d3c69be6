"""perf_event sections: ebpf_exporter's ``perf_event/type=T,config=C,frequency=F`` form."""

from __future__ import annotations

import pytest

from tracekit.errors import SectionError
from tracekit.obj.sections import PerfEventTarget, parse_perf_event_target, parse_section
from tracekit.uapi import ProgType as PT


def test_section_with_target_auto_attaches_and_bare_one_does_not() -> None:
    d = parse_section("perf_event/type=1,config=0,frequency=99")
    assert (d.prog_type, d.attach_kind, d.attach_target, d.auto_attach) == (
        PT.PERF_EVENT, "perf_event", "type=1,config=0,frequency=99", True)
    bare = parse_section("perf_event")
    assert (bare.attach_target, bare.auto_attach) == ("", False)
    with pytest.raises(SectionError):
        parse_section("perf_eventx")


@pytest.mark.parametrize("text,want", [
    ("type=1,config=0,frequency=99", PerfEventTarget(1, 0, sample_freq=99)),
    ("type=0,config=0x1,period=100000", PerfEventTarget(0, 1, sample_period=100000)),
    ("type=software,config=cpu-clock,frequency=49", PerfEventTarget(1, 0, sample_freq=49)),
    ("type=hardware,config=instructions,period=1000", PerfEventTarget(0, 1, sample_period=1000)),
    (" config=3 , type=1 , frequency=1 ", PerfEventTarget(1, 3, sample_freq=1)),
])
def test_targets_parse(text: str, want: PerfEventTarget) -> None:
    assert parse_perf_event_target(text) == want


@pytest.mark.parametrize("text,msg", [
    ("type=1,config=0", "exactly one of frequency= and period="),
    ("type=1,config=0,frequency=9,period=9", "exactly one of"),
    ("config=0,frequency=9", "type= is missing"),
    ("type=1,config=0,frequency=0", "at least 1"),
    ("type=1,config=0,frequency=fast", "not a number"),
    ("type=1,config=cycles,frequency=9", "cpu-clock"),  # names are per type: lists the known ones
    ("type=1,config=0,freq=9", "unknown key 'freq'"),
    ("type=1,config=0,,frequency=9", "is not key=value"),
    ("type=1,type=1,config=0,frequency=9", "given twice"),
    ("type=-1,config=0,frequency=9", "must not be negative"),
])
def test_bad_targets_say_what_is_wrong(text: str, msg: str) -> None:
    with pytest.raises(SectionError, match=msg):
        parse_perf_event_target(text)
